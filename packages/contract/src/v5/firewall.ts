/**
 * `/v5` firewall rules: the `firewall` block of a create, the rule records the API answers, and
 * `GET /v5/firewall/rules` (`vm.firewallRules()`, `freestyle.firewall.rules.list`).
 * @module
 */
import { z } from "zod";

/** Rules in one create's firewall block. */
export const MAX_FIREWALL_RULES = 64;
/** A rule's `description`, as the client's own validator allows. */
export const MAX_FIREWALL_DESCRIPTION = 256;

export const FirewallEndpoint = z
  .strictObject({
    vmId: z
      .string()
      .min(1)
      .optional()
      .meta({ description: 'Another of the account\'s VMs, or `"host"`: Capsule\'s host, which the VM reaches as `host.capsule.internal` (169.254.100.1 in every VM) or at its own gateway address. A rule to `"host"` opens one TCP port (`protocol: "tcp"` and `port` are required) and only a port the server lists (`--allow-host-port`, `allowedHostPorts`); any other port is refused with 400.' }),
    vpcId: z.string().min(1).optional(),
    tunnelId: z.string().min(1).optional(),
    cidr: z.string().min(1).optional(),
    public: z.literal(true).optional(),
    port: z.number().int().min(1).max(65535).optional(),
    protocol: z.enum(["tcp", "udp", "icmp"]).optional(),
  })
  .meta({ id: "V5FirewallEndpoint", description: "One end of a rule. An end with no identity (no vmId, vpcId, tunnelId, cidr or public) is the VM being created." });
export type FirewallEndpoint = z.infer<typeof FirewallEndpoint>;

/** True when the endpoint names a party (anything but "the VM being created"). */
export function hasIdentity(e: FirewallEndpoint): boolean {
  return e.vmId !== undefined || e.vpcId !== undefined || e.tunnelId !== undefined || e.cidr !== undefined || e.public === true;
}

export const InlineFirewallRule = z
  .strictObject({
    action: z.literal("allow"),
    source: FirewallEndpoint,
    destination: FirewallEndpoint,
    description: z.string().max(MAX_FIREWALL_DESCRIPTION).optional(),
  })
  .refine((r) => hasIdentity(r.source) !== hasIdentity(r.destination), "exactly one end of a rule must be the VM being created (an end with no vmId, vpcId, tunnelId, cidr or public)")
  .meta({ id: "V5InlineFirewallRule" });
export type InlineFirewallRule = z.infer<typeof InlineFirewallRule>;

export const FirewallSpec = z
  .strictObject({ rules: z.array(InlineFirewallRule).max(MAX_FIREWALL_RULES) })
  .meta({
    id: "V5FirewallSpec",
    description:
      "Required on create: a VM gets nothing implicitly, only what its allow rules name. Capsule serves outbound rules (`source: {}`) to `{public: true}`, an IPv4 `{cidr}`, a host port the server lists (`{vmId: \"host\", protocol: \"tcp\", port}`, reached as `host.capsule.internal`) and another of the account's VMs (`{vmId}`), narrowed by `protocol`/`port`. Inbound rules, VPCs, tunnels and IPv6 answer 501 BAD_REQUEST (`unsupported: true`, `reason: FIREWALL_RULES`).",
  });
export type FirewallSpec = z.infer<typeof FirewallSpec>;

export const FirewallRuleData = z
  .object({
    id: z.string(),
    action: z.literal("allow"),
    source: FirewallEndpoint,
    destination: FirewallEndpoint,
    description: z.string().nullable().optional(),
    dependencies: z.array(z.object({ kind: z.string(), id: z.string() })),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: "V5FirewallRule" });
export type FirewallRuleData = z.infer<typeof FirewallRuleData>;

/** `GET /v5/firewall/rules`. Capsule has no VPCs or tunnels, so filtering by one lists nothing. */
export const ListFirewallRulesQuery = z.object({
  vmId: z.string().min(1).optional(),
  vpcId: z.string().min(1).optional(),
  tunnelId: z.string().min(1).optional(),
  limit: z.coerce.number().int().min(0).max(10_000).optional(),
  offset: z.coerce.number().int().min(0).optional(),
});
export type ListFirewallRulesQuery = z.infer<typeof ListFirewallRulesQuery>;

export const FirewallRuleList = z.object({ rules: z.array(FirewallRuleData), totalCount: z.number() }).meta({ id: "V5FirewallRuleList" });
export type FirewallRuleList = z.infer<typeof FirewallRuleList>;

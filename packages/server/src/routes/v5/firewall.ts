/**
 * A v5 create's `firewall` block, mapped onto the engine's per-VM policy (default deny plus allow
 * rules; engine net/policy.ts says what each kind can and cannot open), and the policy mapped
 * back to v5 rule records.
 *
 * Outbound rules (the source is the new VM) by destination:
 * - `{public: true}` → the public internet (public unicast IPv4);
 * - `{cidr}` → that IPv4 range (the engine refuses loopback, link-local, multicast, reserved and
 *   the VM network, and never opens the host's own addresses through it);
 * - `{vmId: "host"}` (Capsule's name for its host, which the VM reaches as
 *   `host.capsule.internal`) with `protocol: "tcp"` and a `port` → that host port, if the server
 *   lists it (`--allow-host-port`);
 * - `{vmId}` → another VM of the same account;
 * each narrowed by `protocol` and `port` as given. Anything the engine cannot express answers a
 * coded 501 (`reason: FIREWALL_RULES`) naming what: inbound rules, source narrowing, VPCs,
 * tunnels, IPv6 and combined selectors. Nothing is widened or narrowed silently.
 * @module
 */
import type { FirewallPolicy, FirewallRule, VmInfo } from "@capsule/engine";
import { hasIdentity, type FirewallEndpoint, type FirewallRuleData, type FirewallSpec, type InlineFirewallRule } from "@capsule/contract/v5";
import { ApiError } from "../../errors.js";

/** The `vmId` that names Capsule's host in a rule. */
export const HOST_VM_ID = "host";

function unsupported(index: number, what: string): ApiError {
  return new ApiError("BAD_REQUEST", `firewall.rules[${index}]: ${what} not supported by Capsule`, 501, { unsupported: true, reason: "FIREWALL_RULES" });
}

const present = (e: FirewallEndpoint) => (Object.keys(e) as Array<keyof FirewallEndpoint>).filter((k) => e[k] !== undefined);

function toEngineRule(r: InlineFirewallRule, index: number): FirewallRule {
  // The contract's check guarantees exactly one end names a party; the other is the new VM.
  if (hasIdentity(r.source)) throw unsupported(index, "inbound rules (a source other than the VM being created) are");
  if (present(r.source).length > 0) throw unsupported(index, "narrowing the VM's own end (source port or protocol) is");
  const d = r.destination;
  const identities = present(d).filter((k) => k !== "port" && k !== "protocol");
  if (identities.length !== 1) throw unsupported(index, `a destination combining ${identities.join(" and ")} is`);
  const match = { ...(d.protocol !== undefined ? { protocol: d.protocol } : {}), ...(d.port !== undefined ? { port: d.port } : {}) };
  const note = r.description !== undefined ? { description: r.description } : {};
  if (d.vpcId !== undefined) throw unsupported(index, "VPC destinations are");
  if (d.tunnelId !== undefined) throw unsupported(index, "tunnel destinations are");
  if (d.public === true) return { to: "public", ...match, ...note };
  if (d.cidr !== undefined) {
    if (d.cidr.includes(":")) throw unsupported(index, "IPv6 ranges are");
    return { to: "cidr", cidr: d.cidr, ...match, ...note };
  }
  if (d.vmId === HOST_VM_ID) {
    if (d.protocol !== "tcp" || d.port === undefined) throw new ApiError("CREATE_VM_BAD_REQUEST", `firewall.rules[${index}]: a rule to the host opens one TCP port: give protocol "tcp" and a port`);
    return { to: "host", protocol: "tcp", port: d.port, ...note };
  }
  return { to: "vm", vmId: d.vmId as string, ...match, ...note };
}

/** The engine policy for a v5 `firewall` block; the caller checks that every `vm` rule names a VM of the account. */
export function firewallPolicy(spec: FirewallSpec): FirewallPolicy {
  return { rules: spec.rules.map(toEngineRule) };
}

/** Refuses (400) a policy whose `vm` rules name a VM that is not the account's (`owns` says). */
export async function checkVmTargets(policy: FirewallPolicy, owns: (vmId: string) => Promise<boolean>): Promise<void> {
  for (const r of policy.rules) {
    if (r.to === "vm" && !(await owns(r.vmId))) throw new ApiError("CREATE_VM_BAD_REQUEST", `a firewall rule names VM ${r.vmId}, which is not one of this account's`);
  }
}

function toEndpoint(r: FirewallRule): FirewallEndpoint {
  const match = { ...(r.protocol !== undefined ? { protocol: r.protocol } : {}), ...(r.port !== undefined ? { port: r.port } : {}) };
  switch (r.to) {
    case "public":
      return { public: true, ...match };
    case "cidr":
      return { cidr: r.cidr, ...match };
    case "host":
      return { vmId: HOST_VM_ID, ...match };
    case "vm":
      return { vmId: r.vmId, ...match };
  }
}

/**
 * A VM's rules as v5 rule records. Their ids are derived (`<vm>-fw-<n>`), as rules live in the
 * VM's record; every rule dies with the VM it was created with. A VM without a policy (made
 * through /v1) shows what its egress switch amounts to.
 */
export function firewallRules(vmId: string, vm: Pick<VmInfo, "egress" | "firewall" | "createdAt">): FirewallRuleData[] {
  const rules: FirewallRule[] = vm.firewall?.rules ?? (vm.egress === "internet" ? [{ to: "public" }] : []);
  return rules.map((r, i) => ({
    id: `${vmId}-fw-${i}`,
    action: "allow",
    source: {},
    destination: toEndpoint(r),
    description: r.description ?? null,
    dependencies: [{ kind: "vm", id: vmId }, ...(r.to === "vm" ? [{ kind: "vm", id: r.vmId }] : [])],
    createdAt: vm.createdAt,
    updatedAt: vm.createdAt,
  }));
}

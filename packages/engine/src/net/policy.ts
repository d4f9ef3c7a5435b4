import { EngineError, ErrorCode } from "../errors.js";

/**
 * Per-VM firewall policies: default deny, plus allow rules by destination. A policy is data in
 * the VM's record; {@link validatePolicy} is the only way one gets there, and
 * {@link compilePolicy} turns a validated one into nft statements built from typed values only
 * (integers, addresses re-serialised from integers, interface names derived from VM ids), so no
 * caller's string ever reaches nft's parser.
 *
 * What a rule may open, and what it never can:
 * - `public`: public unicast IPv4 (outside {@link EGRESS_DENIED_IPV4}), never a VM interface.
 * - `cidr`: exactly that IPv4 range, private ones included when named, but never one that overlaps
 *   {@link NEVER_OPEN_IPV4} or the engine's VM subnet (other VMs' /30s and their gateways). The
 *   compiled rule also excludes every VM interface, and the host's own addresses are never
 *   forwarded at all (they are input traffic, which only `host` rules open).
 * - `host`: one TCP port of the host at this VM's own gateway address (where the firewall's
 *   prerouting sends `host.capsule.internal`, the host alias), and only a port the engine
 *   lists in `allowedHostPorts`.
 * - `vm`: another VM of this engine, matched by its host interface (derived from its id, so the
 *   rule follows the VM across restarts and address changes, and matches nothing once it is gone).
 *   Whether the caller may name that VM is the caller's check.
 * IPv6 is never accepted: every rule matches IPv4 only.
 */

export type FirewallProtocol = "tcp" | "udp" | "icmp";

/** Narrowing shared by the rule kinds that take it: a protocol, and a port for tcp/udp. */
export interface FirewallMatch {
  protocol?: FirewallProtocol;
  /** 1-65535; requires `protocol` tcp or udp. */
  port?: number;
}

export type FirewallRule = (
  | ({ to: "public" } & FirewallMatch)
  | ({ to: "cidr"; cidr: string } & FirewallMatch)
  | { to: "host"; protocol: "tcp"; port: number }
  | ({ to: "vm"; vmId: string } & FirewallMatch)
) & {
  /** The caller's note, kept in the record; never part of the ruleset. */
  description?: string;
};

/** Everything not allowed by a rule is denied: `{rules: []}` reaches nothing. */
export interface FirewallPolicy {
  rules: FirewallRule[];
}

/** Rules in one VM's policy. */
export const MAX_FIREWALL_RULES = 64;
/** A rule's description, in characters. */
export const MAX_RULE_DESCRIPTION = 1024;

/**
 * IPv4 destinations a VM may never reach, whatever its policy says: "this network", loopback,
 * link-local (cloud metadata services live at 169.254.169.254), multicast and the reserved block
 * with the limited broadcast address.
 */
export const NEVER_OPEN_IPV4: readonly string[] = ["0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4"];

/**
 * IPv4 destinations outside the public internet: every special-purpose range of RFC 6890 (and its
 * updates: 100.64/10 shared address space, 192.0.0.0/24 protocol assignments, 198.18/15
 * benchmarking, 240/4 reserved incl. 255.255.255.255), so "internet" means public unicast only.
 */
export const EGRESS_DENIED_IPV4: readonly string[] = [
  "0.0.0.0/8", // "this network"
  "10.0.0.0/8", // private
  "100.64.0.0/10", // shared address space (CGNAT)
  "127.0.0.0/8", // loopback
  "169.254.0.0/16", // link-local (cloud metadata lives here)
  "172.16.0.0/12", // private
  "192.0.0.0/24", // IETF protocol assignments
  "192.0.2.0/24", // TEST-NET-1
  "192.88.99.0/24", // 6to4 relay anycast (deprecated)
  "192.168.0.0/16", // private
  "198.18.0.0/15", // benchmarking
  "198.51.100.0/24", // TEST-NET-2
  "203.0.113.0/24", // TEST-NET-3
  "224.0.0.0/4", // multicast
  "240.0.0.0/4", // reserved, and the limited broadcast address
];

/** What a policy is checked against: the engine's own network settings and VMs. */
export interface PolicyContext {
  /** The engine's VM subnet (`10.213.0.0/16`). */
  subnet: string;
  allowedHostPorts: readonly number[];
  /** The VM the policy is for (it may not name itself). */
  vmId: string;
}

interface Ipv4Range {
  base: number;
  bits: number;
}

const IPV4_CIDR = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;
const VM_ID = /^[a-z0-9]{1,32}$/;
const PROTOCOLS: readonly string[] = ["tcp", "udp", "icmp"];

function invalid(where: string, message: string): never {
  throw new EngineError(ErrorCode.InvalidArgument, `firewall ${where}: ${message}`);
}

/** A canonical IPv4 CIDR (no leading zeros, host bits zero); undefined if it is not one. */
export function parseIpv4Cidr(text: string): Ipv4Range | { notCanonical: string } | undefined {
  const m = IPV4_CIDR.exec(text);
  if (!m) return undefined;
  const octets = m.slice(1, 5).map(Number);
  const bits = Number(m[5]);
  if (octets.some((o) => o > 255) || bits > 32) return undefined;
  const base = octets.reduce((acc, o) => acc * 256 + o, 0);
  const size = 2 ** (32 - bits);
  const canonical = `${formatIpv4(base - (base % size))}/${bits}`;
  return canonical === text ? { base, bits } : { notCanonical: canonical };
}

export function formatIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");
}

function rangeOf(cidr: string): Ipv4Range {
  const r = parseIpv4Cidr(cidr);
  if (!r || "notCanonical" in r) throw new Error(`not a canonical IPv4 CIDR: ${cidr}`);
  return r;
}

/** Two ranges overlap exactly when one contains the other. */
export function overlaps(a: Ipv4Range, b: Ipv4Range): boolean {
  const size = 2 ** (32 - Math.min(a.bits, b.bits));
  return Math.floor(a.base / size) === Math.floor(b.base / size);
}

function checkMatch(where: string, m: FirewallMatch): FirewallMatch {
  if (m.protocol !== undefined && !PROTOCOLS.includes(m.protocol)) invalid(where, `protocol must be tcp, udp or icmp`);
  if (m.port !== undefined) {
    if (!Number.isInteger(m.port) || m.port < 1 || m.port > 65535) invalid(where, "port must be an integer from 1 to 65535");
    if (m.protocol !== "tcp" && m.protocol !== "udp") invalid(where, "a port needs protocol tcp or udp");
  }
  return { ...(m.protocol !== undefined ? { protocol: m.protocol } : {}), ...(m.port !== undefined ? { port: m.port } : {}) };
}

function checkRule(where: string, r: FirewallRule, ctx: PolicyContext): FirewallRule {
  if (typeof r !== "object" || r === null) invalid(where, "must be an object");
  if (r.description !== undefined && (typeof r.description !== "string" || r.description.length > MAX_RULE_DESCRIPTION)) {
    invalid(where, `description must be a string of at most ${MAX_RULE_DESCRIPTION} characters`);
  }
  const note = r.description !== undefined ? { description: r.description } : {};
  switch (r.to) {
    case "public":
      return { to: "public", ...checkMatch(where, r), ...note };
    case "cidr": {
      const range = typeof r.cidr === "string" ? parseIpv4Cidr(r.cidr) : undefined;
      if (!range) invalid(where, "cidr must be an IPv4 range like 203.0.113.0/24 (IPv6 is not supported)");
      if ("notCanonical" in range) invalid(where, `cidr ${r.cidr} has host bits set; write ${range.notCanonical}`);
      for (const never of NEVER_OPEN_IPV4) {
        if (overlaps(range, rangeOf(never))) invalid(where, `cidr ${r.cidr} overlaps ${never}, which no VM may reach`);
      }
      if (overlaps(range, rangeOf(ctx.subnet))) invalid(where, `cidr ${r.cidr} overlaps the VM network ${ctx.subnet}; name another VM with a vm rule instead`);
      return { to: "cidr", cidr: r.cidr, ...checkMatch(where, r), ...note };
    }
    case "host":
      if (r.protocol !== "tcp") invalid(where, "host rules open a TCP port: protocol must be tcp");
      if (!ctx.allowedHostPorts.includes(r.port)) invalid(where, `host port ${String(r.port)} is not one of the host's listed ports (${ctx.allowedHostPorts.join(", ") || "none"})`);
      return { to: "host", protocol: "tcp", port: r.port, ...note };
    case "vm":
      if (typeof r.vmId !== "string" || !VM_ID.test(r.vmId)) invalid(where, "vmId must be a VM id");
      if (r.vmId === ctx.vmId) invalid(where, "a VM needs no rule to reach itself");
      return { to: "vm", vmId: r.vmId, ...checkMatch(where, r), ...note };
    default:
      return invalid(where, `unknown rule kind ${String((r as { to?: unknown }).to)}; use public, cidr, host or vm`);
  }
}

/** A checked copy of the policy holding only known fields; INVALID_ARGUMENT says which rule is wrong. */
export function validatePolicy(policy: FirewallPolicy, ctx: PolicyContext): FirewallPolicy {
  if (typeof policy !== "object" || policy === null || !Array.isArray(policy.rules)) invalid("policy", "must be an object with a rules array");
  if (policy.rules.length > MAX_FIREWALL_RULES) invalid("policy", `at most ${MAX_FIREWALL_RULES} rules`);
  return { rules: policy.rules.map((r, i) => checkRule(`rules[${i}]`, r, ctx)) };
}

/** Whether the policy sends anything through the host's forwarding path (public, CIDR or VM rules). */
export function forwards(policy: FirewallPolicy): boolean {
  return policy.rules.some((r) => r.to !== "host");
}

/** Whether the policy reaches the public internet (then the VM gets the host's resolvers). */
export function reachesPublic(policy: FirewallPolicy): boolean {
  return policy.rules.some((r) => r.to === "public");
}

const HOST_IF = /^cv[a-z0-9]{1,12}$/;
const ADDRESS = /^\d{1,3}(\.\d{1,3}){3}$/;

/** The per-VM chains' names (one for traffic to the host, one for forwarded traffic). */
export function vmChains(hostIf: string): { input: string; forward: string } {
  if (!HOST_IF.test(hostIf)) throw new Error(`not a VM interface name: ${hostIf}`);
  return { input: `vm_in_${hostIf}`, forward: `vm_fwd_${hostIf}` };
}

function l4(m: FirewallMatch): string {
  if (m.protocol === undefined) return "";
  if (m.port !== undefined) return ` ${m.protocol} dport ${String(m.port)}`;
  return ` meta l4proto ${m.protocol}`;
}

/**
 * The rules of a VM's two chains, each ending in a reject (the chains are reached by `jump`, so
 * falling off their end would hand the packet back to the shared rules). `peerIf` gives a VM id's
 * host interface; `gatewayIp` is this VM's end of its veth.
 */
export function compilePolicy(policy: FirewallPolicy, gatewayIp: string, peerIf: (vmId: string) => string): { input: string[]; forward: string[] } {
  if (!ADDRESS.test(gatewayIp)) throw new Error(`not an IPv4 address: ${gatewayIp}`);
  const gw = formatIpv4(rangeOf(`${gatewayIp}/32`).base);
  const input: string[] = [];
  const forward: string[] = [];
  for (const r of policy.rules) {
    switch (r.to) {
      case "host":
        input.push(`ip daddr ${gw} tcp dport ${String(r.port)} accept`);
        break;
      case "public":
        forward.push(`oifname != "cv*" ip daddr != @public_denied${l4(r)} accept`);
        break;
      case "cidr": {
        const { base, bits } = rangeOf(r.cidr);
        forward.push(`oifname != "cv*" ip daddr ${formatIpv4(base)}/${String(bits)}${l4(r)} accept`);
        break;
      }
      case "vm": {
        const peer = peerIf(r.vmId);
        if (!HOST_IF.test(peer)) throw new Error(`not a VM interface name: ${peer}`);
        forward.push(`meta nfproto ipv4 oifname "${peer}"${l4(r)} accept`);
        break;
      }
    }
  }
  const deny = "counter reject with icmpx type admin-prohibited";
  return { input: [...input, deny], forward: [...forward, deny] };
}

/**
 * A v5 create's `firewall` block, mapped onto the engine's one egress switch per VM. Two rule sets
 * have an exact equivalent there: no rules (no network, v5's "a VM gets nothing implicitly") and
 * the one rule "this VM may reach the public internet", which is what the engine's `internet`
 * egress allows (public unicast IPv4; every RFC 6890 range, the host and other VMs denied).
 * Anything finer (ports, CIDRs, other VMs, inbound) needs per-VM nftables rules, which Capsule
 * does not have yet: it is refused, never widened or narrowed silently.
 * @module
 */
import { hasIdentity, type FirewallEndpoint, type FirewallSpec, type InlineFirewallRule } from "@capsule/contract/v5";
import { ApiError } from "../../errors.js";

export type Egress = "none" | "internet";

/** An endpoint that says nothing but its identity (no port or protocol narrowing). */
function only(e: FirewallEndpoint, identity: keyof FirewallEndpoint | undefined): boolean {
  const keys = Object.keys(e).filter((k) => e[k as keyof FirewallEndpoint] !== undefined);
  return identity === undefined ? keys.length === 0 : keys.length === 1 && keys[0] === identity;
}

/** `{action: "allow", source: {}, destination: {public: true}}`: the VM to the public internet. */
function isPublicEgress(r: InlineFirewallRule): boolean {
  return only(r.source, undefined) && only(r.destination, "public") && r.destination.public === true && !hasIdentity(r.source);
}

export function firewallEgress(spec: FirewallSpec): Egress {
  if (spec.rules.length === 0) return "none";
  if (spec.rules.every(isPublicEgress)) return "internet";
  throw new ApiError(
    "BAD_REQUEST",
    'per-VM firewall rules are not supported by Capsule yet: use `{rules: []}` (no network) or one rule `{action: "allow", source: {}, destination: {public: true}}` (the public internet)',
    501,
    { unsupported: true, reason: "FIREWALL_RULES" },
  );
}

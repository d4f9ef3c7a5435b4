import fs from "node:fs/promises";
import { PACKAGE_CACHE_PORTS } from "../caches/ports.js";
import { run } from "../host/run.js";
import { compilePolicy, EGRESS_DENIED_IPV4, forwards, vmChains, type FirewallPolicy } from "./policy.js";

export { EGRESS_DENIED_IPV4 } from "./policy.js";

/**
 * Host firewall for VM traffic, one nftables table shared by every engine on the host. VMs are
 * told apart by their host interface (`cv…`). Two kinds of VM:
 *
 * - Without a policy (the engine's egress switch, /v1): membership in shared sets, so adding or
 *   removing such a VM never rewrites rules. input: the host only on (interface, port) pairs in
 *   `allowed`; forward: VM to VM rejected, a VM in `egress` may go out to public IPv4 addresses
 *   (none of RFC 6890's special-purpose ranges) and is masqueraded.
 * - With a policy (policy.ts): two chains of its own, `vm_in_<if>` and `vm_fwd_<if>`, reached
 *   through the verdict maps `vm_in` / `vm_fwd` keyed by its interface before any shared rule,
 *   each ending in a reject. A policy is written, replaced and removed in one `nft -f`
 *   transaction, so the VM is never seen half-configured.
 *
 * Both kinds may also be members of `pkgcache` (interface . its gateway): their connections to
 * their own gateway on a package cache's guest port are DNATed to that cache's loopback
 * listener (caches/ports.ts). Accepting them needs `route_localnet` on the VM's interface
 * (netns.ts), which also stops the kernel treating a VM's loopback-sourced packets as martians, so
 * `guard` drops them before conntrack sees them, and a packet to 127/8 that no DNAT made is
 * rejected before even an established connection's accept: only connections this DNAT made
 * reach loopback.
 *
 * `guard` (raw prerouting, before conntrack and routing) is also the anti-spoofing check, for both
 * kinds and without a rule per VM: a packet from a VM's interface is dropped unless its source is
 * routed back out of that same interface (so only the VM's own /30 passes; another VM's address,
 * the host's, and any other are dropped), and every IPv6 packet from a VM is dropped (no rule opens
 * IPv6; the host end also has IPv6 off, netns.ts). gVisor's netstack writes whole frames onto the
 * veth, so this must hold whatever the sandbox's stack does; root in the VM has neither
 * CAP_NET_ADMIN nor CAP_NET_RAW today (runtime/oci.ts), which is the first line, not the only one.
 * The named counters `spoofed` and `ipv6` count what it dropped.
 *
 * Everything else from a VM is rejected (at once, so a blocked connect fails fast instead of
 * hanging): the host on any of its addresses and ports, the Capsule server too, other VMs.
 */
const TABLE = "capsule";
/** Bump when RULESET changes: an older table is replaced (its set elements are re-added on boot). */
const RULESET_VERSION = 7;
/** The shared sets whose elements survive a ruleset upgrade. */
const SHARED_SETS = ["allowed", "egress", "pkgcache"] as const;
const { apt, npm } = PACKAGE_CACHE_PORTS;

const RULESET = `
table inet ${TABLE} {
  comment "capsule ruleset v${RULESET_VERSION}"
  set allowed { type ifname . inet_service; }
  set egress { type ifname; }
  set pkgcache { type ifname . ipv4_addr; }
  set public_denied { type ipv4_addr; flags interval; elements = { ${EGRESS_DENIED_IPV4.join(", ")} } }
  map vm_in { type ifname : verdict; }
  map vm_fwd { type ifname : verdict; }
  counter spoofed {}
  counter ipv6 {}
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "cv*" iifname . ip daddr @pkgcache tcp dport ${apt.guest} dnat ip to 127.0.0.1:${apt.listen}
    iifname "cv*" iifname . ip daddr @pkgcache tcp dport ${npm.guest} dnat ip to 127.0.0.1:${npm.listen}
  }
  chain guard {
    type filter hook prerouting priority raw; policy accept;
    iifname "cv*" ip saddr 127.0.0.0/8 counter drop
    iifname "cv*" meta nfproto ipv6 counter name ipv6 drop
    iifname "cv*" fib saddr . iif oif missing counter name spoofed drop
  }
  chain input {
    type filter hook input priority filter - 10; policy accept;
    iifname "cv*" ip daddr 127.0.0.0/8 ct status & dnat == 0 counter reject with icmpx type admin-prohibited
    iifname "cv*" ct state established,related accept
    iifname "cv*" ip daddr 127.0.0.1 ct status dnat tcp dport { ${apt.listen}, ${npm.listen} } accept
    iifname "cv*" ip daddr 127.0.0.0/8 counter reject with icmpx type admin-prohibited
    iifname "cv*" iifname vmap @vm_in
    iifname "cv*" meta l4proto tcp iifname . tcp dport @allowed accept
    iifname "cv*" counter reject with icmpx type admin-prohibited
  }
  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    oifname "cv*" ct state established,related accept
    iifname "cv*" iifname vmap @vm_fwd
    iifname "cv*" oifname "cv*" counter reject with icmpx type admin-prohibited
    iifname "cv*" iifname @egress ip daddr != { ${EGRESS_DENIED_IPV4.join(", ")} } accept
    iifname "cv*" counter reject with icmpx type admin-prohibited
    oifname "cv*" counter drop
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    iifname "cv*" oifname != "cv*" masquerade
  }
}
`;

/** The one ensureFirewall of this process, shared by concurrent callers (a pool's boots). */
let ensuring: Promise<void> | undefined;

/** The whole ruleset as `nft -f` reads it (exported for checks). */
export function firewallRuleset(): string {
  return RULESET;
}

/**
 * Creates the table if it is missing (idempotent; other engines may have made it). An older
 * ruleset is replaced, keeping the shared sets' elements; per-VM chains are not kept (they fail
 * closed: the VM reaches nothing) until their engine applies them again, which its recovery does
 * for every VM it adopts.
 */
export function ensureFirewall(): Promise<void> {
  // Two callers each replacing an older table raced: the second `delete table` failed, and so did its VM's boot.
  ensuring ??= installRuleset().catch((err: unknown) => {
    ensuring = undefined;
    throw err;
  });
  return ensuring;
}

async function installRuleset(): Promise<void> {
  const current = await run("nft", ["list", "table", "inet", TABLE]).then(
    (r) => r.stdout.includes(`capsule ruleset v${RULESET_VERSION}"`),
    () => undefined,
  );
  if (current === false) {
    // An older ruleset: replace the rules but keep the set elements of VMs that are up.
    const keep: Array<[string, string]> = [];
    for (const set of SHARED_SETS) for (const e of await elementsOf(set)) keep.push([set, e]);
    await run("nft", ["delete", "table", "inet", TABLE]);
    await run("nft", ["-f", "-"], { input: RULESET });
    for (const [set, e] of keep) await run("nft", ["-f", "-"], { input: `add element inet ${TABLE} ${set} { ${e} }\n` });
  } else if (current === undefined) {
    await run("nft", ["-f", "-"], { input: RULESET });
  }
}

export async function allowVm(hostIf: string, ports: number[], egress: boolean): Promise<void> {
  await ensureFirewall();
  const cmds: string[] = [];
  if (ports.length > 0) cmds.push(`add element inet ${TABLE} allowed { ${ports.map((p) => `"${hostIf}" . ${p}`).join(", ")} }`);
  if (egress) {
    cmds.push(`add element inet ${TABLE} egress { "${hostIf}" }`);
    await fs.writeFile("/proc/sys/net/ipv4/ip_forward", "1");
  }
  if (cmds.length > 0) await run("nft", ["-f", "-"], { input: cmds.join("\n") + "\n" });
}

/** Lets the VM reach the package caches at its gateway (the DNAT above). */
export async function allowPackageCaches(hostIf: string, gatewayIp: string): Promise<void> {
  await ensureFirewall();
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(gatewayIp)) throw new Error(`not an IPv4 address: ${gatewayIp}`);
  await run("nft", ["-f", "-"], { input: `add element inet ${TABLE} pkgcache { "${hostIf}" . ${gatewayIp} }\n` });
}

/**
 * Gives a VM its policy, replacing whatever it had (an earlier policy, or the shared sets'
 * membership of a VM booted without one, such as a warm pool's), in one transaction.
 * `peerIf` maps a VM id to its host interface.
 */
export async function applyVmPolicy(hostIf: string, gatewayIp: string, policy: FirewallPolicy, peerIf: (vmId: string) => string): Promise<void> {
  await ensureFirewall();
  const chains = vmChains(hostIf);
  const rules = compilePolicy(policy, gatewayIp, peerIf);
  const cmds: string[] = [];
  for (const [chain, lines] of [[chains.input, rules.input], [chains.forward, rules.forward]] as const) {
    cmds.push(`add chain inet ${TABLE} ${chain}`, `flush chain inet ${TABLE} ${chain}`, ...lines.map((l) => `add rule inet ${TABLE} ${chain} ${l}`));
  }
  cmds.push(`add element inet ${TABLE} vm_in { "${hostIf}" : jump ${chains.input} }`, `add element inet ${TABLE} vm_fwd { "${hostIf}" : jump ${chains.forward} }`);
  for (const set of ["allowed", "egress"]) {
    const mine = (await elementsOf(set)).filter((e) => e.startsWith(`"${hostIf}"`));
    if (mine.length > 0) cmds.push(`delete element inet ${TABLE} ${set} { ${mine.join(", ")} }`);
  }
  if (forwards(policy)) await fs.writeFile("/proc/sys/net/ipv4/ip_forward", "1");
  await run("nft", ["-f", "-"], { input: cmds.join("\n") + "\n" });
}

/** Removes a VM's policy chains and map entries, in one transaction that also holds when there are none. */
async function forgetVmPolicy(hostIf: string): Promise<void> {
  const chains = vmChains(hostIf);
  const cmds = [`add chain inet ${TABLE} ${chains.input}`, `add chain inet ${TABLE} ${chains.forward}`];
  // Added first so that deleting them cannot fail for "not there" (nft 1.0.6 has no `destroy`).
  for (const [map, chain] of [["vm_in", chains.input], ["vm_fwd", chains.forward]] as const) {
    cmds.push(`add element inet ${TABLE} ${map} { "${hostIf}" : jump ${chain} }`, `delete element inet ${TABLE} ${map} { "${hostIf}" }`);
  }
  for (const chain of [chains.input, chains.forward]) cmds.push(`flush chain inet ${TABLE} ${chain}`, `delete chain inet ${TABLE} ${chain}`);
  await run("nft", ["-f", "-"], { input: cmds.join("\n") + "\n" });
}

/** Removes every element and chain naming this interface. Never fails for "not there". */
export async function forgetVm(hostIf: string): Promise<void> {
  for (const set of SHARED_SETS) {
    const elems = await elementsOf(set);
    const mine = elems.filter((e) => e.startsWith(`"${hostIf}"`));
    if (mine.length === 0) continue;
    await run("nft", ["-f", "-"], { input: `delete element inet ${TABLE} ${set} { ${mine.join(", ")} }\n` }).catch(() => undefined);
  }
  await ensureFirewall();
  await forgetVmPolicy(hostIf);
}

/** Set elements as nft prints them (`"cvabc" . 8080`). */
export async function elementsOf(set: string): Promise<string[]> {
  try {
    const { stdout } = await run("nft", ["list", "set", "inet", TABLE, set]);
    const m = /elements = \{([^}]*)\}/s.exec(stdout);
    if (!m?.[1]) return [];
    return m[1].split(",").map((s) => s.trim()).filter(Boolean);
  } catch {
    return [];
  }
}

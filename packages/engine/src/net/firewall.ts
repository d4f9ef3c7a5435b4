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
 *   `allowed`, and only at an address of that interface (`fib daddr . iif`: the VM's own gateway,
 *   where the host alias is sent too), never at the host's other addresses or another VM's
 *   gateway; forward: VM to VM rejected, a VM in `egress` may go out to public IPv4 addresses
 *   (none of RFC 6890's special-purpose ranges) and is masqueraded.
 * - With a policy (policy.ts): two chains of its own, `vm_in_<if>` and `vm_fwd_<if>`, reached
 *   through the verdict maps `vm_in` / `vm_fwd` keyed by its interface before any shared rule,
 *   each ending in a reject. A policy is written, replaced and removed in one `nft -f`
 *   transaction, so the VM is never seen half-configured.
 *
 * Every VM reaches the host as `host.capsule.internal`, {@link HOST_ALIAS_IPV4}: one address in
 * every VM, so a memory copy's processes keep a valid host address in what they cached (a
 * copy has its own /30, and so another gateway, than the source it was captured from).
 * `prerouting` DNATs a VM's connections to the alias to its own gateway (`vm_gateway`, interface
 * : gateway, both kinds), after which every rule below sees them as connections to the gateway.
 *
 * Both kinds may also be members of `pkgcache` (interface . its gateway, and interface . the
 * alias): their connections to either on a package cache's guest port are DNATed to that cache's
 * loopback listener (caches/ports.ts). Accepting them needs `route_localnet` on the VM's interface
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
 * `flows` (prerouting, after conntrack) bounds each VM's share of the host's one conntrack table
 * ({@link VM_FLOW_LIMITS}), keyed by its interface in two dynamic sets, so no rule per VM either.
 *
 * Everything else from a VM is rejected (at once, so a blocked connect fails fast instead of
 * hanging): the host on any of its addresses and ports, the Capsule server too, other VMs.
 */
const TABLE = "capsule";
/** Bump when RULESET changes: an older table is replaced, keeping its shared sets' elements. */
const RULESET_VERSION = 11;
/** The shared sets whose elements survive a ruleset upgrade. */
const SHARED_SETS = ["allowed", "egress", "pkgcache"] as const;
/** The shared maps whose elements survive a ruleset upgrade. */
const SHARED_MAPS = ["vm_gateway"] as const;
/** The dynamic sets holding a VM's flow limits' state, keyed by its interface alone. */
const FLOW_SETS = ["vm_flow_rate", "vm_flow_live"] as const;
/** Tries at replacing an older table while other engines on the host may be replacing it too. */
const MAX_INSTALL_ATTEMPTS = 3;
const { apt, npm } = PACKAGE_CACHE_PORTS;

/**
 * The address every VM reaches the host at, as `host.capsule.internal` (its /etc/hosts). It is
 * link-local, so it is never a public or operator address a VM could mean otherwise: no policy
 * rule may open 169.254.0.0/16 and egress never goes there (policy.ts).
 */
export const HOST_ALIAS_IPV4 = "169.254.100.1";

/**
 * One VM's share of the host's conntrack table (`nf_conntrack_max`, 262144 on this kind of host;
 * when it is full the kernel drops every new connection on the host: other VMs', the API's
 * clients', ssh). Root in one VM made ~52k entries in 40 s before these limits, each kept 120 s
 * in TIME_WAIT. A VM over a limit loses only its own new flows (dropped, so a TCP client retries
 * its SYN a second later); its established connections and every other VM go on.
 */
export const VM_FLOW_LIMITS = {
  /**
   * New flows (TCP connections, UDP and ICMP flows) a VM may start per second. `npm install`
   * through the cache opens tens a second, a connect storm thousands.
   */
  newPerSecond: 100,
  /** New flows a VM that was quiet may start at once: a parallel install's first fetches. */
  burst: 500,
  /**
   * Flows a VM may have open at a time, in every state nft's `ct count` counts: all but TCP's
   * TIME_WAIT and CLOSE, which the two limits above and the short timeouts below bound instead.
   */
  live: 512,
  /**
   * Seconds a VM's TCP flow is kept once closed (TIME_WAIT, CLOSE; the kernel's default is 120
   * and 10) or while its handshake is unanswered (SYN_SENT, SYN_RECV; default 120 and 60), and a
   * UDP flow with no reply (default 30). Long enough for a late FIN or SYN-ACK; a closed flow's
   * ports can be reused at once anyway.
   */
  shortSeconds: 10,
  /** Seconds an answered UDP flow is kept idle (the kernel's default is 120): a DNS query's is short-lived, a QUIC one sends within this. */
  udpRepliedSeconds: 60,
  /**
   * Seconds an idle established TCP flow is kept (the kernel's default is 5 days). A VM's entries
   * are flushed when its network is torn down (net/conntrack.ts); this bounds the life of one that
   * escaped the flush (an engine killed half-way through a teardown). Past the 2 h of idle after
   * which Linux and gVisor send a connection's first keepalive probe, so a connection with
   * keepalive on never loses its entry. One idle longer without keepalive does: its next packet
   * from the VM starts a new flow (a host port's connection goes on; through the egress NAT,
   * usually too), but one the far end sends first finds no NAT entry and is reset. Cloud NATs
   * drop idle flows far sooner (minutes), so software that talks across the internet copes.
   */
  establishedSeconds: 3 * 3600,
} as const;

/**
 * The most conntrack entries one VM can hold at once: at most `live` counted ones, plus closed
 * ones, each of which closed within the last `shortSeconds` and so was either one of the `live`
 * open then or a flow started since (at most `burst` + `newPerSecond` x `shortSeconds`).
 */
export const MAX_CONNTRACK_ENTRIES_PER_VM =
  2 * VM_FLOW_LIMITS.live + VM_FLOW_LIMITS.burst + VM_FLOW_LIMITS.newPerSecond * VM_FLOW_LIMITS.shortSeconds;

const L = VM_FLOW_LIMITS;
/** Seconds an idle VM's rate-limit element lives: past burst / rate, so a fresh one (full burst) changes nothing. */
const FLOW_RATE_ELEMENT_SECONDS = 60;

/** How a table says its version (older engines read it too). */
const TABLE_COMMENT = `capsule ruleset v${RULESET_VERSION}`;

const RULESET = `
table inet ${TABLE} {
  comment "${TABLE_COMMENT}"
  set allowed { type ifname . inet_service; }
  set egress { type ifname; }
  set pkgcache { type ifname . ipv4_addr; }
  map vm_gateway { type ifname : ipv4_addr; }
  set public_denied { type ipv4_addr; flags interval; elements = { ${EGRESS_DENIED_IPV4.join(", ")} } }
  map vm_in { type ifname : verdict; }
  map vm_fwd { type ifname : verdict; }
  counter spoofed {}
  counter ipv6 {}
  ct timeout vm_tcp { protocol tcp; l3proto ip; policy = { syn_sent: ${L.shortSeconds}, syn_recv: ${L.shortSeconds}, established: ${L.establishedSeconds}, time_wait: ${L.shortSeconds}, close: ${L.shortSeconds} }; }
  ct timeout vm_udp { protocol udp; l3proto ip; policy = { unreplied: ${L.shortSeconds}, replied: ${L.udpRepliedSeconds} }; }
  set vm_flow_rate { type ifname; flags dynamic, timeout; timeout ${FLOW_RATE_ELEMENT_SECONDS}s; }
  set vm_flow_live { type ifname; flags dynamic; }
  counter flows_rate {}
  counter flows_live {}
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "cv*" iifname . ip daddr @pkgcache tcp dport ${apt.guest} dnat ip to 127.0.0.1:${apt.listen}
    iifname "cv*" iifname . ip daddr @pkgcache tcp dport ${npm.guest} dnat ip to 127.0.0.1:${npm.listen}
    # A VM without an element keeps the alias as its destination, which nothing accepts.
    iifname "cv*" ip daddr ${HOST_ALIAS_IPV4} dnat ip to iifname map @vm_gateway
  }
  chain guard {
    type filter hook prerouting priority raw; policy accept;
    iifname "cv*" ip saddr 127.0.0.0/8 counter drop
    iifname "cv*" meta nfproto ipv6 counter name ipv6 drop
    iifname "cv*" fib saddr . iif oif missing counter name spoofed drop
  }
  chain flows {
    type filter hook prerouting priority filter; policy accept;
    # Before a new flow's entry is confirmed (at input or postrouting), so a dropped one leaves none.
    # A VM's rate element is refreshed by each new flow (update); its live element (ct count's
    # list of its flows) is collected by the kernel once empty.
    iifname "cv*" ct state new update @vm_flow_rate { iifname limit rate over ${L.newPerSecond}/second burst ${L.burst} packets } counter name flows_rate drop
    iifname "cv*" ct state new add @vm_flow_live { iifname ct count over ${L.live} } counter name flows_live drop
    iifname "cv*" ct state new meta l4proto tcp ct timeout set "vm_tcp"
    iifname "cv*" ct state new meta l4proto udp ct timeout set "vm_udp"
  }
  chain input {
    type filter hook input priority filter - 10; policy accept;
    iifname "cv*" ip daddr 127.0.0.0/8 ct status & dnat == 0 counter reject with icmpx type admin-prohibited
    iifname "cv*" ct state established,related accept
    iifname "cv*" ip daddr 127.0.0.1 ct status dnat tcp dport { ${apt.listen}, ${npm.listen} } accept
    iifname "cv*" ip daddr 127.0.0.0/8 counter reject with icmpx type admin-prohibited
    iifname "cv*" iifname vmap @vm_in
    iifname "cv*" meta l4proto tcp iifname . tcp dport @allowed fib daddr . iif type local accept
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
 * for every VM it adopts. A newer ruleset (a newer engine's) is left as it is: never downgraded
 * (engines before v8 still replace any table that is not their own version).
 */
export function ensureFirewall(): Promise<void> {
  // Two callers each replacing an older table raced: the second `delete table` failed, and so did its VM's boot.
  ensuring ??= installRuleset().catch((err: unknown) => {
    ensuring = undefined;
    throw err;
  });
  return ensuring;
}

/** The installed table: its ruleset version (0: older than versions) and its handle, new each time a table is created. */
async function installedTable(): Promise<{ version: number; handle: number } | undefined> {
  const listing = await run("nft", ["-a", "list", "table", "inet", TABLE]).then((r) => r.stdout, () => undefined);
  if (listing === undefined) return undefined;
  const handle = /^table inet \S+ \{ # handle (\d+)$/m.exec(listing)?.[1];
  if (!handle) throw new Error(`cannot read the handle of nft table inet ${TABLE}`);
  return { version: Number(/comment "capsule ruleset v(\d+)"/.exec(listing)?.[1] ?? 0), handle: Number(handle) };
}

/**
 * Installs RULESET unless this or a newer version is there, in one `nft -f` transaction (no
 * moment without the table, which would let VM traffic through unfiltered). Engines on the
 * host race: the transaction names what it read, so it fails if another engine changed the table
 * since (`create table` if there was none; `delete table ... handle` of the one read, and a
 * replaced table has a new handle), and the next attempt reads again. Elements added to the
 * older table between the read and the swap (by an engine of that older version) are lost: those
 * VMs fail closed until their engine adds them again.
 */
async function installRuleset(): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const found = await installedTable();
    if (found && found.version >= RULESET_VERSION) return;
    // A table's comment is set only where it is created: `create` carries it too.
    const cmds = [found ? `delete table inet handle ${found.handle}` : `create table inet ${TABLE} { comment "${TABLE_COMMENT}"; }`, RULESET];
    if (found) {
      for (const set of SHARED_SETS) for (const e of await elementsOf(set)) cmds.push(`add element inet ${TABLE} ${set} { ${e} }`);
      for (const map of SHARED_MAPS) for (const e of await elementsOf(map, "map")) cmds.push(`add element inet ${TABLE} ${map} { ${e} }`);
    }
    try {
      await run("nft", ["-f", "-"], { input: cmds.join("\n") + "\n" });
      return;
    } catch (err) {
      if (attempt >= MAX_INSTALL_ATTEMPTS) throw err;
    }
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

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** Makes {@link HOST_ALIAS_IPV4} the VM's gateway (the DNAT above). Every VM, either kind. */
export async function mapHostAlias(hostIf: string, gatewayIp: string): Promise<void> {
  await ensureFirewall();
  if (!IPV4.test(gatewayIp)) throw new Error(`not an IPv4 address: ${gatewayIp}`);
  const element = `{ "${hostIf}" : ${gatewayIp} }`;
  // `add` is a no-op for the same element (recovery of a running VM) and fails for the same
  // interface with another gateway (one an interrupted teardown left): that one is replaced in
  // one transaction, so the alias never points at the old address once this returns.
  await run("nft", ["-f", "-"], { input: `add element inet ${TABLE} vm_gateway ${element}\n` }).catch(() =>
    run("nft", ["-f", "-"], { input: `delete element inet ${TABLE} vm_gateway { "${hostIf}" }\nadd element inet ${TABLE} vm_gateway ${element}\n` }),
  );
}

/** Lets the VM reach the package caches at its gateway and at the host alias (the DNAT above). */
export async function allowPackageCaches(hostIf: string, gatewayIp: string): Promise<void> {
  await ensureFirewall();
  if (!IPV4.test(gatewayIp)) throw new Error(`not an IPv4 address: ${gatewayIp}`);
  await run("nft", ["-f", "-"], { input: `add element inet ${TABLE} pkgcache { "${hostIf}" . ${gatewayIp}, "${hostIf}" . ${HOST_ALIAS_IPV4} }\n` });
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
  // Its flow limits start afresh when it boots again; the conntrack entries of this run's flows
  // go with its link (deleteNetns, net/conntrack.ts), so none stays behind uncounted. Its host
  // alias element goes too (its next boot may have another /30).
  for (const set of [...FLOW_SETS, ...SHARED_MAPS]) {
    await run("nft", ["-f", "-"], { input: `delete element inet ${TABLE} ${set} { "${hostIf}" }\n` }).catch(() => undefined);
  }
  await ensureFirewall();
  await forgetVmPolicy(hostIf);
}

/** Set or map elements as nft prints them (`"cvabc" . 8080`, `"cvabc" : 10.213.0.1`). */
export async function elementsOf(set: string, kind: "set" | "map" = "set"): Promise<string[]> {
  try {
    const { stdout } = await run("nft", ["list", kind, "inet", TABLE, set]);
    const m = /elements = \{([^}]*)\}/s.exec(stdout);
    if (!m?.[1]) return [];
    return m[1].split(",").map((s) => s.trim()).filter(Boolean);
  } catch {
    return [];
  }
}

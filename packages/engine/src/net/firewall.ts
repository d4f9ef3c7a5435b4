import fs from "node:fs/promises";
import { run } from "../host/run.js";

/**
 * Host firewall for VM traffic, one nftables table shared by every engine on the host. VMs are
 * told apart by their host interface (`cv…`); per-VM policy is set membership, so adding or
 * removing a VM never rewrites rules.
 *
 * - input: a VM reaches the host only on (interface, port) pairs in `allowed` — everything
 *   else addressed to the host (any of its addresses, any port, the Capsule server too) is
 *   rejected (at once, so a blocked connect fails fast instead of hanging).
 * - forward: VM to VM is dropped; a VM whose interface is in `egress` may go out to public
 *   IPv4 addresses (none of RFC 6890's special-purpose ranges) and is masqueraded; all else dropped.
 */
const TABLE = "capsule";
/** Bump when RULESET changes: an older table is replaced (its set elements are re-added on boot). */
const RULESET_VERSION = 3;

/**
 * IPv4 destinations an egress VM may never reach: every special-purpose range of RFC 6890 (and
 * its updates: 100.64/10 shared address space, 192.0.0.0/24 protocol assignments, 198.18/15
 * benchmarking, 240/4 reserved incl. 255.255.255.255), so "internet" means public unicast only.
 * IPv6 has no accept rule at all: it stays blocked.
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

const RULESET = `
table inet ${TABLE} {
  comment "capsule ruleset v${RULESET_VERSION}"
  set allowed { type ifname . inet_service; }
  set egress { type ifname; }
  chain input {
    type filter hook input priority filter - 10; policy accept;
    iifname "cv*" ct state established,related accept
    iifname "cv*" meta l4proto tcp iifname . tcp dport @allowed accept
    iifname "cv*" counter reject with icmpx type admin-prohibited
  }
  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    oifname "cv*" ct state established,related accept
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

let ensured = false;

/** Creates the table if it is missing (idempotent; other engines may have made it). */
/** The whole ruleset as `nft -f` reads it (exported for checks). */
export function firewallRuleset(): string {
  return RULESET;
}

export async function ensureFirewall(): Promise<void> {
  if (ensured) return;
  const current = await run("nft", ["list", "table", "inet", TABLE]).then(
    (r) => r.stdout.includes(`capsule ruleset v${RULESET_VERSION}"`),
    () => undefined,
  );
  if (current === false) {
    // An older ruleset: replace the rules but keep the set elements of VMs that are up.
    const keep = [...(await elementsOf("allowed")).map((e) => ["allowed", e]), ...(await elementsOf("egress")).map((e) => ["egress", e])];
    await run("nft", ["delete", "table", "inet", TABLE]);
    await run("nft", ["-f", "-"], { input: RULESET });
    for (const [set, e] of keep) await run("nft", ["-f", "-"], { input: `add element inet ${TABLE} ${set} { ${e} }\n` });
  } else if (current === undefined) {
    await run("nft", ["-f", "-"], { input: RULESET });
  }
  ensured = true;
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

/** Removes every element naming this interface. Never fails for "not there". */
export async function forgetVm(hostIf: string): Promise<void> {
  for (const set of ["allowed", "egress"]) {
    const elems = await elementsOf(set);
    const mine = elems.filter((e) => e.startsWith(`"${hostIf}"`));
    if (mine.length === 0) continue;
    await run("nft", ["-f", "-"], { input: `delete element inet ${TABLE} ${set} { ${mine.join(", ")} }\n` }).catch(() => undefined);
  }
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

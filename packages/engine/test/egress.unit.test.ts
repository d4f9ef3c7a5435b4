/**
 * The egress denylist: a VM with egress "internet" reaches public unicast IPv4 only. Every
 * special-purpose range of the IANA IPv4 Special-Purpose Address Registry (RFC 6890 and updates)
 * must fall inside a denied prefix, and ordinary public addresses must not.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { EGRESS_DENIED_IPV4, firewallRuleset } from "../src/net/firewall.js";

function parse(cidr: string): { base: number; bits: number } {
  const [addr, len] = cidr.split("/") as [string, string];
  const base = addr.split(".").reduce((n, o) => n * 256 + Number(o), 0);
  return { base, bits: Number(len) };
}

function contains(outer: string, inner: string): boolean {
  const o = parse(outer);
  const i = parse(inner);
  if (i.bits < o.bits) return false;
  const size = 2 ** (32 - o.bits);
  return Math.floor(i.base / size) === Math.floor(o.base / size);
}

const denied = (range: string) => EGRESS_DENIED_IPV4.some((d) => contains(d, range));

// The registry's entries (https://www.iana.org/assignments/iana-ipv4-special-registry), as of 2026.
const SPECIAL_PURPOSE = [
  "0.0.0.0/8", "0.0.0.0/32", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
  "172.16.0.0/12", "192.0.0.0/24", "192.0.0.0/29", "192.0.0.8/32", "192.0.0.9/32", "192.0.0.10/32",
  "192.0.0.170/32", "192.0.0.171/32", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24",
  "192.88.99.0/24", "192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24",
  "203.0.113.0/24", "240.0.0.0/4", "255.255.255.255/32",
  // Not in the special-purpose registry but never a public unicast destination:
  "224.0.0.0/4",
];

// 192.31.196.0/24 (AS112), 192.52.193.0/24 (AMT) and 192.175.48.0/24 (AS112 direct delegation)
// are globally reachable anycast services by the registry's own "Globally Reachable" column.
const GLOBALLY_REACHABLE = new Set(["192.31.196.0/24", "192.52.193.0/24", "192.175.48.0/24"]);

test("every special-purpose IPv4 range that is not globally reachable is denied to egress VMs", () => {
  const missed = SPECIAL_PURPOSE.filter((r) => !GLOBALLY_REACHABLE.has(r) && !denied(r));
  assert.deepEqual(missed, []);
});

test("public unicast addresses stay reachable for egress VMs", () => {
  for (const ip of ["1.1.1.1/32", "8.8.8.8/32", "151.101.1.1/32", "100.63.255.255/32", "100.128.0.0/32", "198.20.0.1/32", "223.255.255.254/32"]) {
    assert.equal(denied(ip), false, `${ip} must not be denied`);
  }
});

test("the ruleset accepts egress only for IPv4 outside the denylist (IPv6 has no accept rule)", () => {
  const rules = firewallRuleset();
  const accepts = rules.split("\n").filter((l) => /\baccept$/.test(l.trim()) && l.includes("@egress"));
  assert.equal(accepts.length, 1, rules);
  const line = accepts[0] as string;
  assert.match(line, /\bip daddr != \{/);
  for (const range of EGRESS_DENIED_IPV4) assert.ok(line.includes(range), `${range} in ${line}`);
  assert.doesNotMatch(rules, /\bip6 daddr\b[^\n]*accept/);
});

test("before conntrack, a VM's packets with a source not routed back out of its veth, and all its IPv6, are dropped", () => {
  const guard = /chain guard \{([^}]*)\}/.exec(firewallRuleset())?.[1] ?? "";
  assert.match(guard, /priority raw;/);
  assert.match(guard, /iifname "cv\*" meta nfproto ipv6 counter name ipv6 drop/);
  assert.match(guard, /iifname "cv\*" fib saddr \. iif oif missing counter name spoofed drop/);
});

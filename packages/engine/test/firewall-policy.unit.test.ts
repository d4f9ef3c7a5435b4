/**
 * Per-VM firewall policies: what validation lets through (and the copy it keeps), and the nft
 * statements a validated policy compiles to. No nft is run here; firewall-policy.test.ts checks
 * the compiled rules from inside real VMs.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isEngineError } from "../src/errors.js";
import { compilePolicy, EGRESS_DENIED_IPV4, NEVER_OPEN_IPV4, overlaps, parseIpv4Cidr, validatePolicy, vmChains, type FirewallPolicy, type FirewallRule } from "../src/net/policy.js";

const CTX = { subnet: "10.213.0.0/16", allowedHostPorts: [8080, 9090], vmId: "aaaaaaaaaaaa" };
const peerIf = (id: string) => `cv${id.slice(-12)}`;

function refuses(rule: unknown, pattern: RegExp): void {
  assert.throws(
    () => validatePolicy({ rules: [rule as FirewallRule] }, CTX),
    (err: unknown) => isEngineError(err, "INVALID_ARGUMENT") && pattern.test((err as Error).message),
  );
}

describe("firewall policy validation", () => {
  it("keeps only known fields of valid rules", () => {
    const policy = {
      rules: [
        { to: "public", protocol: "tcp", port: 443, extra: "dropped" },
        { to: "cidr", cidr: "192.168.7.0/24", description: "the office" },
        { to: "host", protocol: "tcp", port: 8080 },
        { to: "vm", vmId: "bbbbbbbbbbbb", protocol: "icmp" },
      ],
    } as unknown as FirewallPolicy;
    assert.deepEqual(validatePolicy(policy, CTX), {
      rules: [
        { to: "public", protocol: "tcp", port: 443 },
        { to: "cidr", cidr: "192.168.7.0/24", description: "the office" },
        { to: "host", protocol: "tcp", port: 8080 },
        { to: "vm", vmId: "bbbbbbbbbbbb", protocol: "icmp" },
      ],
    });
    assert.deepEqual(validatePolicy({ rules: [] }, CTX), { rules: [] });
  });

  it("refuses CIDRs that are not canonical IPv4, and names the corrected value", () => {
    refuses({ to: "cidr", cidr: "192.168.7.1/24" }, /write 192\.168\.7\.0\/24/);
    refuses({ to: "cidr", cidr: "2001:db8::/32" }, /IPv6 is not supported/);
    for (const bad of ["1.2.3.4", "1.2.3.256/32", "01.2.3.0/24", "1.2.3.0/33", "1.2.3.0/24 accept", '1.2.3.0/24" }', ""]) {
      refuses({ to: "cidr", cidr: bad }, /cidr/);
    }
  });

  it("never opens loopback, link-local (metadata), multicast, reserved, 0/8 or the VM network", () => {
    for (const cidr of ["127.0.0.1/32", "169.254.169.254/32", "224.0.0.0/8", "255.255.255.255/32", "0.0.0.0/0", "0.0.0.0/8", "128.0.0.0/1"]) {
      refuses({ to: "cidr", cidr }, /which no VM may reach/);
    }
    for (const cidr of ["10.213.0.4/30", "10.213.0.0/16", "10.0.0.0/8", "10.213.128.0/17"]) refuses({ to: "cidr", cidr }, /overlaps the VM network/);
    // Private ranges outside the VM network are the caller's to name.
    assert.equal(validatePolicy({ rules: [{ to: "cidr", cidr: "10.214.0.0/16" }] }, CTX).rules.length, 1);
  });

  it("opens only listed host ports, over TCP", () => {
    refuses({ to: "host", protocol: "tcp", port: 22 }, /not one of the host's listed ports \(8080, 9090\)/);
    refuses({ to: "host", protocol: "udp", port: 8080 }, /protocol must be tcp/);
    assert.throws(() => validatePolicy({ rules: [{ to: "host", protocol: "tcp", port: 8080 }] }, { ...CTX, allowedHostPorts: [] }), /listed ports \(none\)/);
  });

  it("checks ports, protocols, VM ids, descriptions and the rule count", () => {
    refuses({ to: "public", port: 443 }, /needs protocol tcp or udp/);
    refuses({ to: "public", protocol: "icmp", port: 1 }, /needs protocol tcp or udp/);
    refuses({ to: "public", protocol: "tcp", port: 0 }, /from 1 to 65535/);
    refuses({ to: "public", protocol: "tcp", port: 1.5 }, /from 1 to 65535/);
    refuses({ to: "public", protocol: "sctp" }, /tcp, udp or icmp/);
    refuses({ to: "vm", vmId: "Bad-Id" }, /vmId must be a VM id/);
    refuses({ to: "vm", vmId: CTX.vmId }, /reach itself/);
    refuses({ to: "public", description: "x".repeat(1025) }, /description/);
    refuses({ to: "internet" }, /unknown rule kind/);
    assert.throws(() => validatePolicy({ rules: Array.from({ length: 65 }, () => ({ to: "public" as const })) }, CTX), /at most 64/);
  });
});

describe("firewall policy compilation", () => {
  it("puts host ports on the input chain at the VM's gateway, everything else on the forward chain, each ending in a reject", () => {
    const policy = validatePolicy(
      {
        rules: [
          { to: "host", protocol: "tcp", port: 8080 },
          { to: "public" },
          { to: "public", protocol: "udp", port: 53 },
          { to: "cidr", cidr: "192.168.7.0/24", protocol: "tcp" },
          { to: "vm", vmId: "bbbbbbbbbbbb", protocol: "tcp", port: 7777 },
        ],
      },
      CTX,
    );
    const deny = "counter reject with icmpx type admin-prohibited";
    assert.deepEqual(compilePolicy(policy, "10.213.0.1", peerIf), {
      input: ["ip daddr 10.213.0.1 tcp dport 8080 accept", deny],
      forward: [
        'oifname != "cv*" ip daddr != @public_denied accept',
        'oifname != "cv*" ip daddr != @public_denied udp dport 53 accept',
        'oifname != "cv*" ip daddr 192.168.7.0/24 meta l4proto tcp accept',
        'meta nfproto ipv4 oifname "cvbbbbbbbbbbbb" tcp dport 7777 accept',
        deny,
      ],
    });
    assert.deepEqual(compilePolicy({ rules: [] }, "10.213.0.1", peerIf), { input: [deny], forward: [deny] });
  });

  it("refuses names and addresses that are not what they claim before they reach nft", () => {
    assert.throws(() => compilePolicy({ rules: [] }, "10.213.0.1; flush ruleset", peerIf));
    assert.throws(() => compilePolicy({ rules: [{ to: "vm", vmId: "x" }] }, "10.213.0.1", () => 'cvx" accept'));
    assert.throws(() => vmChains("eth0"));
    assert.deepEqual(vmChains("cvabc123"), { input: "vm_in_cvabc123", forward: "vm_fwd_cvabc123" });
  });

  it("the never-open ranges are all outside the public internet too", () => {
    for (const never of NEVER_OPEN_IPV4) {
      const n = parseIpv4Cidr(never) as { base: number; bits: number };
      assert.ok(
        EGRESS_DENIED_IPV4.some((d) => overlaps(n, parseIpv4Cidr(d) as { base: number; bits: number })),
        never,
      );
    }
  });
});

/** The pure parts of the /v5 routes: the firewall → engine policy mapping, Range parsing, the contract's rule checks. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CreateVmRequest, ExecRequest, WriteFileQuery } from "@capsule/contract/v5";
import { parseRange } from "../src/byte-range.js";
import { ApiError } from "../src/errors.js";
import { firewallPolicy, firewallRules, HOST_VM_ID } from "../src/routes/v5/firewall.js";

const internet = { action: "allow" as const, source: {}, destination: { public: true as const } };

describe("v5 firewall → engine policy", () => {
  it("maps outbound rules by destination, narrowing and descriptions kept", () => {
    assert.deepEqual(firewallPolicy({ rules: [] }), { rules: [] });
    assert.deepEqual(
      firewallPolicy({
        rules: [
          internet,
          { ...internet, destination: { public: true, port: 443, protocol: "tcp" }, description: "https" },
          { ...internet, destination: { cidr: "192.168.7.0/24", protocol: "udp" } },
          { ...internet, destination: { vmId: HOST_VM_ID, port: 8080, protocol: "tcp" } },
          { ...internet, destination: { vmId: "abcdefabcdef", protocol: "icmp" } },
        ],
      }),
      {
        rules: [
          { to: "public" },
          { to: "public", protocol: "tcp", port: 443, description: "https" },
          { to: "cidr", cidr: "192.168.7.0/24", protocol: "udp" },
          { to: "host", protocol: "tcp", port: 8080 },
          { to: "vm", vmId: "abcdefabcdef", protocol: "icmp" },
        ],
      },
    );
  });

  it("answers the rules back as the client sent them", () => {
    const spec = { rules: [internet, { ...internet, destination: { vmId: HOST_VM_ID, port: 8080, protocol: "tcp" as const }, description: "api" }] };
    const rules = firewallRules("vm1", { egress: "none", firewall: firewallPolicy(spec), createdAt: "t" });
    assert.deepEqual(
      rules.map((r) => ({ source: r.source, destination: r.destination, description: r.description })),
      [
        { source: {}, destination: { public: true }, description: null },
        { source: {}, destination: { vmId: "host", port: 8080, protocol: "tcp" }, description: "api" },
      ],
    );
    // A /v1 VM shows what its egress switch amounts to.
    assert.deepEqual(firewallRules("vm1", { egress: "internet", createdAt: "t" }).map((r) => r.destination), [{ public: true }]);
    assert.deepEqual(firewallRules("vm1", { egress: "none", createdAt: "t" }), []);
  });

  it("what the engine cannot express is a coded 501 saying what", () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ action: "allow", source: { public: true }, destination: { port: 8080, protocol: "tcp" } }, /inbound rules/],
      [{ action: "allow", source: { port: 1000, protocol: "tcp" }, destination: { public: true } }, /source port or protocol/],
      [{ ...internet, destination: { vpcId: "vpc-1" } }, /VPC destinations/],
      [{ ...internet, destination: { tunnelId: "tun-1" } }, /tunnel destinations/],
      [{ ...internet, destination: { cidr: "2001:db8::/32" } }, /IPv6/],
      [{ ...internet, destination: { public: true, cidr: "203.0.113.0/24" } }, /combining public and cidr|combining cidr and public/],
    ];
    for (const [rule, pattern] of cases) {
      assert.throws(
        () => firewallPolicy({ rules: [internet, rule as typeof internet] }),
        (e: unknown) => e instanceof ApiError && e.status === 501 && e.code === "BAD_REQUEST" && e.extra.reason === "FIREWALL_RULES" && e.extra.unsupported === true && pattern.test(e.message) && /rules\[1\]/.test(e.message),
        JSON.stringify(rule),
      );
    }
    assert.throws(() => firewallPolicy({ rules: [{ ...internet, destination: { vmId: HOST_VM_ID } }] }), (e: unknown) => e instanceof ApiError && e.status === 400);
  });

  it("the contract refuses rules the client itself would refuse", () => {
    const bad = (firewall: unknown) => !CreateVmRequest.safeParse({ firewall }).success;
    assert.ok(bad(undefined), "firewall is required");
    assert.ok(bad({ rules: [{ action: "allow", source: {}, destination: {} }] }), "both ends the new VM");
    assert.ok(bad({ rules: [{ action: "allow", source: { public: true }, destination: { public: true } }] }), "neither end the new VM");
    assert.ok(bad({ rules: [{ action: "deny", source: {}, destination: { public: true } }] }), "only allow rules");
    assert.ok(bad({ rules: [{ ...internet, extra: 1 }] }), "unknown rule field");
    assert.ok(bad({ rules: [], other: 1 }), "unknown firewall field");
    assert.ok(!bad({ rules: [internet] }));
  });
});

describe("Range (v1 files-raw and v5 fs/read)", () => {
  it("one range of three forms; none without the header", () => {
    assert.equal(parseRange(undefined), undefined);
    assert.deepEqual(parseRange("bytes=6-10"), { start: 6, end: 10 });
    assert.deepEqual(parseRange("bytes=6-"), { start: 6 });
    assert.deepEqual(parseRange("bytes=-5"), { suffix: 5 });
  });

  it("anything else is FILES_BAD_REQUEST, not a silent whole file", () => {
    for (const h of ["bytes=10-6", "bytes=-", "bytes=0-1,4-5", "items=0-1", "bytes=a-b", "", "bytes=99999999999999999999-", "bytes=-99999999999999999999"]) {
      assert.throws(() => parseRange(h), (e: unknown) => e instanceof ApiError && e.code === "FILES_BAD_REQUEST", h);
    }
  });
});

describe("v5 request schemas", () => {
  it("exec: POSIX env names, base64 stdin, the timeout range", () => {
    assert.ok(ExecRequest.safeParse({ command: "cat", env: { FOO_1: "x" }, stdin: "aGk=" }).success);
    assert.ok(!ExecRequest.safeParse({ command: "env", env: { "A-B": "x" } }).success);
    assert.ok(!ExecRequest.safeParse({ command: "cat", stdin: "not base64!" }).success);
    assert.ok(!ExecRequest.safeParse({ command: "true", timeoutMs: 0 }).success);
    assert.ok(!ExecRequest.safeParse({ command: "true", timeoutMs: 86_400_001 }).success);
  });

  it("write: mode is decimal, at most 0o7777", () => {
    assert.ok(WriteFileQuery.safeParse({ path: "/a", mode: "493" }).success);
    assert.ok(!WriteFileQuery.safeParse({ path: "/a", mode: "0o755" }).success);
    assert.ok(!WriteFileQuery.safeParse({ path: "/a", mode: "4096" }).success);
  });
});

/** The pure parts of the /v5 routes: the firewall → egress mapping, Range parsing, the contract's rule checks. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CreateVmRequest, ExecRequest, WriteFileQuery } from "@capsule/contract/v5";
import { ApiError } from "../src/errors.js";
import { firewallEgress } from "../src/routes/v5/firewall.js";
import { parseRange } from "../src/routes/v5/fs-read.js";

const internet = { action: "allow" as const, source: {}, destination: { public: true as const } };

describe("v5 firewall → egress", () => {
  it("no rules is no network; the public-internet rule (once or repeated) is internet", () => {
    assert.equal(firewallEgress({ rules: [] }), "none");
    assert.equal(firewallEgress({ rules: [internet] }), "internet");
    assert.equal(firewallEgress({ rules: [internet, { ...internet, description: "again" }] }), "internet");
  });

  it("anything finer is a coded 501, never widened or narrowed", () => {
    const finer = [
      { ...internet, destination: { public: true as const, port: 443, protocol: "tcp" as const } },
      { ...internet, destination: { cidr: "203.0.113.0/24" } },
      { ...internet, destination: { vmId: "other" } },
      { action: "allow" as const, source: { public: true as const }, destination: { port: 8080, protocol: "tcp" as const } },
      { action: "allow" as const, source: { public: true as const }, destination: {} },
    ];
    for (const rule of finer) {
      assert.throws(
        () => firewallEgress({ rules: [internet, rule] }),
        (e: unknown) => e instanceof ApiError && e.status === 501 && e.code === "BAD_REQUEST" && e.extra.reason === "FIREWALL_RULES" && e.extra.unsupported === true,
        JSON.stringify(rule),
      );
    }
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

describe("v5 Range", () => {
  it("one range of three forms; none without the header", () => {
    assert.equal(parseRange(undefined), undefined);
    assert.deepEqual(parseRange("bytes=6-10"), { start: 6, end: 10 });
    assert.deepEqual(parseRange("bytes=6-"), { start: 6 });
    assert.deepEqual(parseRange("bytes=-5"), { suffix: 5 });
  });

  it("anything else is FILES_BAD_REQUEST, not a silent whole file", () => {
    for (const h of ["bytes=10-6", "bytes=-", "bytes=0-1,4-5", "items=0-1", "bytes=a-b", ""]) {
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

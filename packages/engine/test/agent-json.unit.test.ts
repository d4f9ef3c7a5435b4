/**
 * The host's JSON frame parser refuses deep nesting before JSON.parse: a hostile guest's 4 MiB of
 * `[` would otherwise cost ~110 MiB of host heap per frame (found by `npm run fuzz`).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MAX_JSON_DEPTH, nestedDeeperThan, parseJson, parseReply, ProtocolError } from "@capsule/agent-protocol";

describe("agent JSON frames", () => {
  it("refuses nesting deeper than the limit, counting neither strings nor escapes", () => {
    const deep = (d: number) => Buffer.from("[".repeat(d) + "]".repeat(d));
    assert.equal(nestedDeeperThan(deep(MAX_JSON_DEPTH), MAX_JSON_DEPTH), false);
    assert.equal(nestedDeeperThan(deep(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH), true);
    assert.equal(nestedDeeperThan(Buffer.from(JSON.stringify({ s: "[".repeat(1000) + '\\"[' })), 2), false);
    assert.throws(() => parseJson(deep(2_000_000), "a reply"), (e: unknown) => e instanceof ProtocolError && /nested deeper than 32/.test(e.message));
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 4; i++) assert.throws(() => parseJson(deep(2_000_000), "a reply"));
    assert.ok(process.memoryUsage().heapUsed - before < 64 << 20, "refused without building the arrays");
  });
  it("still parses every reply shape", () => {
    const session = { sessionId: "pty-1", user: "root", command: ["/bin/sh", "-l"], cols: 80, rows: 24, pid: 7, running: true, exitCode: null, createdAt: new Date(0).toISOString(), attached: 1 };
    const reply = parseReply(parseJson(Buffer.from(JSON.stringify({ type: "sessions", sessions: [session] })), "a reply"));
    assert.equal(reply.type, "sessions");
  });
});

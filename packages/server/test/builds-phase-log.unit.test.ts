/**
 * A running phase's live log (builds/phase-log.ts): written at most once per interval while it
 * grows, never after close, and bounded to the row's limit with the count of what was cut, however
 * much a VM prints.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PhaseLog } from "../src/builds/phase-log.js";
import { PHASE_LOG_MAX_CHARS } from "../src/builds/rows.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("phase live log", () => {
  it("writes what came so far at most once per interval, and nothing after close", async () => {
    const writes: string[] = [];
    const log = new PhaseLog((s) => writes.push(s), 30);
    log.append("one\n");
    log.append("two\n");
    assert.deepEqual(writes, [], "not at once");
    await sleep(60);
    assert.deepEqual(writes, ["one\ntwo\n"], "one write for both lines");
    log.append("three\n");
    log.close();
    await sleep(60);
    assert.equal(writes.length, 1, "closed: the phase's end writes the final log");
    assert.equal(log.text(), "one\ntwo\nthree\n");
  });

  it("keeps only the row's limit of a log that never stops, saying how much was cut", () => {
    const log = new PhaseLog(() => undefined, 60_000);
    const line = "x".repeat(99) + "\n";
    const lines = 10_000; // 1 MB, 15 times the limit
    for (let i = 0; i < lines; i++) log.append(line);
    const text = log.text();
    const cut = lines * line.length - PHASE_LOG_MAX_CHARS;
    assert.ok(text.startsWith(`[… ${cut} chars cut]\n`), text.slice(0, 40));
    assert.equal(text.length, `[… ${cut} chars cut]\n`.length + PHASE_LOG_MAX_CHARS);
    log.set("replaced\n");
    assert.equal(log.text(), "replaced\n", "set replaces all, the cut count too");
    log.close();
  });
});

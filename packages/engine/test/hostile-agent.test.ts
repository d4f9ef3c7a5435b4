/**
 * Root in a VM replaces the agent's socket with listeners that break the protocol in every way we
 * know. The host must stay up, another VM must keep working, and each call on the hostile VM must
 * end with a coded error within its deadline.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AGENT_DEADLINES } from "../src/agent/client.js";
import { isEngineError } from "../src/index.js";
import { useEngine } from "../test-support/harness.js";
import { turnHostile } from "../test-support/hostile-agent.js";

/** Scheduling slack on a loaded 2-core host, on top of each deadline. */
const SLACK_MS = 5_000;

interface Outcome {
  code: string | undefined;
  message: string;
  ms: number;
}

async function outcome(call: () => Promise<unknown>): Promise<Outcome> {
  const t0 = Date.now();
  try {
    const value = await call();
    return { code: "RESOLVED", message: JSON.stringify(value)?.slice(0, 200) ?? "", ms: Date.now() - t0 };
  } catch (err) {
    return { code: isEngineError(err) ? err.code : `not an EngineError: ${String(err)}`, message: (err as Error).message, ms: Date.now() - t0 };
  }
}

describe("a hostile agent", () => {
  const t = useEngine();

  it("gets coded errors within deadlines; the host and another VM carry on", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const [hostile, good] = await Promise.all([engine.createVm(), engine.createVm()]);
    await turnHostile(engine, hostile.id);

    const quick = SLACK_MS;
    const exec = (command: string, extra: { timeoutMs?: number } = {}) => () => engine.guest.exec(hostile.id, { command, maxOutputBytes: 1 << 20, ...extra });
    const cases: Array<[string, () => Promise<unknown>, string, number]> = [
      ["bad JSON", exec("bad-json"), "AGENT_PROTOCOL_ERROR", quick],
      ["null", exec("null"), "AGENT_PROTOCOL_ERROR", quick],
      ["wrong types", exec("wrong-types"), "AGENT_PROTOCOL_ERROR", quick],
      ["unknown reply type", exec("unknown-reply"), "AGENT_PROTOCOL_ERROR", quick],
      ["unknown frame type", exec("unknown-frame"), "AGENT_PROTOCOL_ERROR", quick],
      ["a host-only frame type", exec("stdin-frame"), "AGENT_PROTOCOL_ERROR", quick],
      ["an oversized frame", exec("oversized"), "AGENT_PROTOCOL_ERROR", quick],
      ["a frame cut off by a hang-up", exec("truncated-close"), "AGENT_PROTOCOL_ERROR", quick],
      ["a frame that never finishes", exec("truncated-stall"), "AGENT_TIMEOUT", AGENT_DEADLINES.stalledFrameMs + SLACK_MS],
      ["a streamed stdout frame cut off by a hang-up", exec("data-frame-close"), "AGENT_PROTOCOL_ERROR", quick],
      ["a streamed stdout frame that never finishes", exec("data-frame-stall"), "AGENT_TIMEOUT", AGENT_DEADLINES.stalledFrameMs + SLACK_MS],
      ["nothing at all", exec("silent"), "AGENT_TIMEOUT", AGENT_DEADLINES.replyMs + SLACK_MS],
      ["endless stdout past the command's timeout", exec("endless-stdout", { timeoutMs: 1000 }), "AGENT_TIMEOUT", 1000 + AGENT_DEADLINES.execGraceMs + SLACK_MS],
      ["a stat of the wrong shape", () => engine.guest.stat(hostile.id, "/case/bad-stat"), "AGENT_PROTOCOL_ERROR", quick],
      ["a file's data before its stat", () => engine.guest.readFile(hostile.id, "/case/data-first"), "AGENT_PROTOCOL_ERROR", quick],
      // Found by the agent fuzzer: was a write after end, a 500. The read ends at the Eof.
      ["file data after the file's end", () => engine.guest.readFile(hostile.id, "/case/data-after-eof"), "RESOLVED", quick],
      ["an upload the agent never takes", () => engine.guest.writeFile(hostile.id, "/case/never-reads", Buffer.alloc(32 << 20)), "AGENT_TIMEOUT", AGENT_DEADLINES.replyMs + SLACK_MS],
      ["a PTY session of the wrong shape", () => engine.guest.ptyOpen(hostile.id), "AGENT_PROTOCOL_ERROR", quick],
      ["another protocol version", () => engine.guest.agentVersion(hostile.id), "AGENT_PROTOCOL_ERROR", quick],
    ];

    const rssBefore = process.memoryUsage().rss;
    // All at once, with the good VM working alongside.
    const goodWork = (async () => {
      const seen: string[] = [];
      for (let i = 0; i < 5; i++) {
        const r = await engine.guest.exec(good.id, { command: `echo alive-${i}` });
        seen.push(r.stdout.trim());
      }
      return seen;
    })();
    const results = await Promise.all(cases.map(([, call]) => outcome(call)));
    const rssAfter = process.memoryUsage().rss;

    const report = cases.map(([name], i) => `${name}: ${results[i]?.code} in ${results[i]?.ms} ms (${results[i]?.message})`).join("\n");
    cases.forEach(([name, , code, withinMs], i) => {
      const r = results[i] as Outcome;
      assert.equal(r.code, code, `${name}\n${report}`);
      assert.ok(r.ms <= withinMs, `${name} took ${r.ms} ms, its deadline is ${withinMs} ms\n${report}`);
    });
    ctx.diagnostic(report);
    assert.deepEqual(await goodWork, ["alive-0", "alive-1", "alive-2", "alive-3", "alive-4"]);
    // Endless stdout is bounded by maxOutputBytes and backpressure, not by the guest.
    assert.ok(rssAfter - rssBefore < 256 * 1024 * 1024, `host RSS grew by ${((rssAfter - rssBefore) / 1048576).toFixed(0)} MiB`);

    // The hostile VM keeps failing cleanly, and the good one keeps working, afterwards too.
    assert.equal((await outcome(exec("bad-json"))).code, "AGENT_PROTOCOL_ERROR");
    assert.equal((await engine.guest.exec(good.id, { command: "echo still-here" })).stdout, "still-here\n");
  });
});

/**
 * A guest out of processes is a retryable condition, not a bad request: the agent reports the
 * fork's EAGAIN as RESOURCE_EXHAUSTED (the API answers 503 SERVICE_UNAVAILABLE with that reason).
 *
 * Under runsc the limit the guest meets is gVisor's RLIMIT_NPROC (see hostPidsLimit): the host's
 * pids cgroup also counts gVisor's own threads, and a guest that filled it would take its whole
 * sandbox down instead of seeing EAGAIN. The test checks that the sandbox lives through it.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isEngineError } from "../src/index.js";
import { useEngine } from "../test-support/harness.js";

describe("a guest out of pids", () => {
  const t = useEngine({ limits: { pids: 64 } });

  it("makes exec fail with RESOURCE_EXHAUSTED, and works again once pids are free", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const vm = (await engine.createVm()).id;
    // bash retries a failed fork, so the filler takes every pid that comes free; the sleepers
    // keep its pipes open, so it lives until it is killed (or its timeout).
    const filler = await engine.guest.spawn(vm, { command: 'bash -c "while :; do sleep 600 & done" 2>/dev/null', timeoutMs: 60_000 });
    filler.stdout.resume();
    filler.stderr.resume();
    let code: string | undefined;
    const seen = new Set<string>();
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      try {
        await engine.guest.exec(vm, { command: "true" });
      } catch (err) {
        code = isEngineError(err) ? (err.agentCode ?? err.code) : String(err);
        seen.add(`${code}: ${(err as Error).message}`);
        if (code === "RESOURCE_EXHAUSTED") break;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(code, "RESOURCE_EXHAUSTED", [...seen].join("\n"));
    filler.kill("SIGKILL");
    await filler.exited.catch(() => undefined);
    let out = "";
    for (let i = 0; i < 50 && out !== "back\n"; i++) {
      out = await engine.guest.exec(vm, { command: "echo back" }).then((r) => r.stdout, () => "");
      if (out !== "back\n") await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(out, "back\n");
  });
});

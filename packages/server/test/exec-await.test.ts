/**
 * exec-await is bounded and honest: output past the per-stream limit is reported as truncated,
 * and a client that hangs up ends its command instead of leaving it running.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEFAULT_LIMITS } from "../src/context.js";
import { call, useServer } from "../test-support/harness.js";

describe("exec-await limits", () => {
  const t = useServer();

  it("reports truncation instead of cutting output silently", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const vm = (await call(url, keyA, "POST", "/v1/vms", { idleTimeoutSeconds: null })).body.id as string;
    const over = DEFAULT_LIMITS.maxExecOutputBytes + 1024 * 1024;
    const r = await call(url, keyA, "POST", `/v1/vms/${vm}/exec-await`, { command: `yes | head -c ${over}; echo done >&2`, timeoutMs: 120_000 });
    assert.equal(r.status, 200);
    assert.equal(r.body.statusCode, 0);
    assert.equal(r.body.truncated, true);
    assert.equal(String(r.body.stdout).length, DEFAULT_LIMITS.maxExecOutputBytes);
    assert.equal(r.body.stderr, "done\n");
    const small = await call(url, keyA, "POST", `/v1/vms/${vm}/exec-await`, { command: "echo fits" });
    assert.equal(small.body.stdout, "fits\n");
    assert.equal(small.body.truncated, undefined, "only a cut answer says truncated");
    await call(url, keyA, "DELETE", `/v1/vms/${vm}`);
  });

  it("a client that hangs up ends its command", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const vm = (await call(url, keyA, "POST", "/v1/vms", { idleTimeoutSeconds: null })).body.id as string;
    const abort = new AbortController();
    const pending = fetch(`${url}/v1/vms/${vm}/exec-await`, {
      method: "POST",
      headers: { authorization: `Bearer ${keyA}`, "content-type": "application/json" },
      body: JSON.stringify({ command: "echo $$ > /tmp/abandoned.pid; exec sleep 600", timeoutMs: 200_000 }),
      signal: abort.signal,
    }).catch((e: unknown) => e);
    // Wait until the command runs (bounded), then hang up.
    let pid = "";
    for (let i = 0; i < 100 && !pid; i++) {
      pid = String((await call(url, keyA, "POST", `/v1/vms/${vm}/exec-await`, { command: "cat /tmp/abandoned.pid 2>/dev/null" })).body.stdout ?? "").trim();
      if (!pid) await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(pid, /^\d+$/, "the command started");
    abort.abort();
    assert.ok((await pending) instanceof Error, "the request was aborted");
    let alive = true;
    for (let i = 0; i < 100 && alive; i++) {
      const probe = await call(url, keyA, "POST", `/v1/vms/${vm}/exec-await`, { command: `kill -0 ${pid} 2>/dev/null && echo alive || echo gone` });
      alive = probe.body.stdout === "alive\n";
      if (alive) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(alive, false, "the abandoned command was killed");
    await call(url, keyA, "DELETE", `/v1/vms/${vm}`);
  });
});

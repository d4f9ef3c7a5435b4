/**
 * `ckpt.prepare` on an agent run on this host (no sandbox: what runsc needs is that the agent
 * holds no host socket, which a host run shows as well): the listener and every host connection
 * close, a running command, a PTY session and the fork server go on, and the agent listens again
 * on the host's marker, or after deafMs without one.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { CKPT_RESUME_MARKER } from "@capsule/agent-protocol";
import { Client, call, exec, sleep, startAgent, waitUntil, type Agent } from "../test-support/harness.js";

let agent: Agent;
before(async () => {
  agent = await startAgent();
});
after(async () => {
  await agent?.stop();
});

const marker = () => path.join(path.dirname(agent.socket), CKPT_RESUME_MARKER);

/** Sends ckpt.prepare; resolves with its reply once the agent closed the connection. */
async function prepare(deafMs?: number): Promise<unknown> {
  const client = await Client.open(agent.socket, { op: "ckpt.prepare", ...(deafMs === undefined ? {} : { deafMs }) });
  const reply = await client.json();
  await client.closed;
  return reply;
}

/** Milliseconds until `version` answers again, trying every millisecond. */
async function untilListening(limitMs: number): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < limitMs) {
    try {
      if ((await call(agent.socket, { op: "version" })).type === "version") return performance.now() - t0;
    } catch {
      await sleep(1);
    }
  }
  throw new Error(`the agent did not listen again within ${limitMs} ms`);
}

test("prepare closes the listener and the host's connections; sessions and commands go on; the marker brings the socket back", async (t) => {
  await exec(agent.socket, { command: "true" }); // the fork server is up
  const count = path.join(agent.dir, "count");
  // Appends, so the file only grows: a reader never sees it between a truncation and a write.
  const counter = await Client.open(agent.socket, { op: "exec", command: `while :; do echo x >> ${count}; sleep 0.02; done` });
  assert.equal((await counter.json()).type, "started");
  const pty = await Client.open(agent.socket, { op: "pty.open", cols: 80, rows: 24, command: ["/bin/sh"], slug: "keep" });
  const session = await pty.json();
  assert.equal(session.type, "session");
  assert.ok(await waitUntil(() => fs.existsSync(count)));

  fs.writeFileSync(marker(), ""); // a stale marker must not end the next cycle at once
  assert.deepEqual(await prepare(10_000), { type: "ok" });
  // Should an assertion below fail, the agent still listens again for the next test.
  t.after(() => fs.writeFileSync(marker(), ""));
  assert.equal(fs.existsSync(agent.socket), false, "the socket file is gone when the reply arrives");
  await Promise.all([counter.closed, pty.closed]); // every host connection was closed
  assert.equal(fs.existsSync(marker()), false);
  const before = fs.statSync(count).size;
  await sleep(200);
  assert.equal(fs.existsSync(agent.socket), false, "still deaf without the marker");
  assert.ok(await waitUntil(() => fs.statSync(count).size > before), "the command the host was connected to runs on");

  fs.writeFileSync(marker(), "");
  const latency = await untilListening(2_000);
  t.diagnostic(`marker -> answering again: ${latency.toFixed(1)} ms`);
  assert.ok(await waitUntil(() => !fs.existsSync(marker())), "the agent removed the marker");
  const sessions = await call(agent.socket, { op: "pty.list" });
  assert.ok(sessions.type === "sessions" && sessions.sessions.some((s) => s.slug === "keep" && s.running), "the PTY session is still running");
  const again = await Client.open(agent.socket, { op: "pty.attach", sessionId: session.type === "session" ? session.session.sessionId : "" });
  assert.equal((await again.json()).type, "session");
  await again.close();
  assert.equal((await exec(agent.socket, { command: "echo after" })).stdout, "after\n");
  // The counter is killed with the agent (it still counts as a running command).
});

test("without the marker the agent listens again after deafMs on its own", async () => {
  const t0 = performance.now();
  await prepare(300);
  await untilListening(5_000);
  const deaf = performance.now() - t0;
  assert.ok(deaf >= 290 && deaf < 3_000, `listening again after ${deaf.toFixed(0)} ms`);
});

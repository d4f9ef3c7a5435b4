/** Lifecycle verbs, the idle timeout, and a server killed with SIGKILL and started again. */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import type { ChildProcess } from "node:child_process";
import { call, createKey, destroyDataDir, scratchDir, spawnServer, useServer } from "../test-support/harness.js";
import { connect, waitForMessages, wsUrl } from "../test-support/ws-client.js";

const text = (m: Array<{ data: Buffer; binary: boolean }>) => m.filter((x) => x.binary).map((x) => x.data.toString("utf8")).join("");

async function waitForState(url: string, key: string, vm: string, state: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = (await call(url, key, "GET", `/v1/vms/${vm}`)).body.state;
    if (s === state) return;
    if (Date.now() > deadline) throw new Error(`VM ${vm} is ${String(s)}, expected ${state}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe("lifecycle", () => {
  const t = useServer({ idleCheckMs: 250 });

  it("suspend wakes on use; stop stays stopped until start; disk kept", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const vm = (await call(url, keyA, "POST", "/v1/vms", { idleTimeoutSeconds: null })).body.id as string;
    try {
      await call(url, keyA, "POST", `/v1/vms/${vm}/exec-await`, { command: "echo kept > /root/f" });
      assert.equal((await call(url, keyA, "POST", `/v1/vms/${vm}/suspend`)).status, 200);
      assert.equal((await call(url, keyA, "GET", `/v1/vms/${vm}`)).body.state, "suspended");
      assert.equal((await call(url, keyA, "POST", `/v1/vms/${vm}/exec-await`, { command: "cat /root/f" })).body.stdout, "kept\n");
      assert.equal((await call(url, keyA, "GET", `/v1/vms/${vm}`)).body.state, "running");
      assert.equal((await call(url, keyA, "POST", `/v1/vms/${vm}/stop`)).status, 200);
      const refused = await call(url, keyA, "POST", `/v1/vms/${vm}/exec-await`, { command: "true" });
      assert.equal(refused.body.code, "VM_NOT_RUNNING");
      assert.deepEqual((await call(url, keyA, "POST", `/v1/vms/${vm}/await`)).body, { id: vm, exitStatus: "stopped" });
      assert.equal((await call(url, keyA, "POST", `/v1/vms/${vm}/start`, {})).status, 200);
      assert.equal((await call(url, keyA, "POST", `/v1/vms/${vm}/exec-await`, { command: "cat /root/f" })).body.stdout, "kept\n");
    } finally {
      await call(url, keyA, "DELETE", `/v1/vms/${vm}`);
    }
  });

  it("idleTimeoutSeconds: 2 suspends an idle VM; the next exec wakes it and sees earlier files", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const vm = (await call(url, keyA, "POST", "/v1/vms", { idleTimeoutSeconds: 2 })).body.id as string;
    const never = (await call(url, keyA, "POST", "/v1/vms", { idleTimeoutSeconds: null })).body.id as string;
    try {
      await call(url, keyA, "PUT", `/v1/vms/${vm}/files/%2Froot%2Fbefore.txt`, { content: Buffer.from("written before").toString("base64"), encoding: "base64" });
      await waitForState(url, keyA, vm, "suspended", 15_000);
      const r = await call(url, keyA, "POST", `/v1/vms/${vm}/exec-await`, { command: "cat /root/before.txt" });
      assert.equal(r.body.stdout, "written before");
      assert.equal((await call(url, keyA, "GET", `/v1/vms/${vm}`)).body.state, "running");
      assert.equal((await call(url, keyA, "GET", `/v1/vms/${never}`)).body.state, "running", "null never suspends");
      // a long request in flight keeps it awake past the timeout
      const long = await call(url, keyA, "POST", `/v1/vms/${vm}/exec-await`, { command: "sleep 3; echo done", timeoutMs: 10_000 });
      assert.equal(long.body.stdout, "done\n");
    } finally {
      await call(url, keyA, "DELETE", `/v1/vms/${vm}`);
      await call(url, keyA, "DELETE", `/v1/vms/${never}`);
    }
  });
});

describe("restart", () => {
  let dataDir: string | undefined;
  let child: ChildProcess | undefined;
  after(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child?.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
    if (dataDir) await destroyDataDir(dataDir);
  });

  it("VMs, snapshots, keys and PTY sessions survive a SIGKILLed server", async (ctx) => {
    const { hostGap } = await import("../test-support/harness.js");
    const gap = await hostGap();
    if (gap) {
      if (process.env.CI) throw new Error(gap);
      return ctx.skip(gap);
    }
    dataDir = await scratchDir();
    const key = createKey(dataDir, "alice");
    let server = await spawnServer(dataDir);
    child = server.child;
    const a = (await call(server.url, key, "POST", "/v1/vms", {})).body.id as string;
    const b = (await call(server.url, key, "POST", "/v1/vms", { idleTimeoutSeconds: null })).body.id as string;
    await call(server.url, key, "POST", `/v1/vms/${a}/exec-await`, { command: "echo survived > /root/s" });
    const snap = (await call(server.url, key, "POST", `/v1/vms/${a}/snapshot`, {})).body.snapshotId as string;
    await call(server.url, key, "POST", `/v1/vms/${b}/suspend`);
    // A terminal session, detached: it lives in the VM's agent, not in the server process.
    const pty = await connect(wsUrl(server.url, `/v1/vms/${a}/pty?cols=80&rows=24`), key);
    await waitForMessages(pty, (m) => m.some((x) => !x.binary && String(x.data).includes("sessionInfo")));
    const sessionId = (JSON.parse(String(pty.messages.find((x) => !x.binary)?.data)) as { sessionId: string }).sessionId;
    pty.ws?.send(Buffer.from("echo before-$((40+2))\r"));
    await waitForMessages(pty, (m) => text(m).includes("before-42"));
    pty.ws?.close();

    const killed = new Promise((r) => server.child.once("exit", r));
    server.child.kill("SIGKILL");
    await killed;

    server = await spawnServer(dataDir);
    child = server.child;
    const list = (await call(server.url, key, "GET", "/v1/vms")).body.vms as Array<{ id: string; state: string }>;
    assert.deepEqual(list.map((v) => v.id).sort(), [a, b].sort());
    assert.equal(list.find((v) => v.id === b)?.state, "suspended");
    assert.equal((await call(server.url, key, "POST", `/v1/vms/${a}/exec-await`, { command: "cat /root/s" })).body.stdout, "survived\n");
    assert.equal((await call(server.url, key, "POST", `/v1/vms/${b}/exec-await`, { command: "echo woke" })).body.stdout, "woke\n");
    const c = (await call(server.url, key, "POST", "/v1/vms", { snapshotId: snap })).body.id as string;
    assert.equal((await call(server.url, key, "POST", `/v1/vms/${c}/exec-await`, { command: "cat /root/s" })).body.stdout, "survived\n");
    assert.equal((await call(server.url, key, "GET", `/v1/vms/snapshots/${snap}`)).status, 200);

    const sessions = (await call(server.url, key, "GET", `/v1/vms/${a}/pty/sessions`)).body as { sessions?: Array<{ sessionId?: string; id?: string }> };
    assert.ok(JSON.stringify(sessions).includes(sessionId), `session ${sessionId} listed after the restart: ${JSON.stringify(sessions)}`);
    const back = await connect(wsUrl(server.url, `/v1/vms/${a}/pty/sessions/${sessionId}?cols=80&rows=24`), key);
    await waitForMessages(back, (m) => text(m).includes("before-42")); // scrollback from before the restart
    back.ws?.send(Buffer.from("echo after-$((40+3))\r"));
    await waitForMessages(back, (m) => text(m).includes("after-43"));
    back.ws?.close();
  });
});

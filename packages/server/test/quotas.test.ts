/**
 * Admission control and per-account quotas on a real server and real sandboxes: a VM over the
 * per-VM maximum is refused before anything is made; account caps on VMs, running VMs,
 * snapshots and concurrent execs answer the official client's codes; two concurrent creates at a
 * limit of 1 give exactly one VM; and the official freestyle@0.1.63 client throws a refused create
 * at once instead of resending it.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { client, rejectsWith } from "../test-support/client.js";
import { call, useServer } from "../test-support/harness.js";
import { connect, waitForMessages, wsUrl } from "../test-support/ws-client.js";

describe("admission control and quotas", () => {
  const t = useServer({
    quotas: { vms: 2, runningVms: 1, snapshots: 1, concurrentExecs: 2, ptys: 1 },
    admission: { memoryMb: 4096, vcpus: 2 },
  });

  const engineVmCount = async () => (await t.get().server.engine.listVms()).length;

  it("a VM over the per-VM maximum: 403 with the client's code, and nothing is created", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const before = await engineVmCount();
    const mem = await call(url, keyA, "POST", "/v1/vms", { memSizeGb: 1024, vcpuCount: 1024 });
    assert.equal(mem.status, 403);
    assert.equal(mem.body.code, "MEM_OVER_PLAN_LIMIT");
    assert.equal(mem.body.reason, "VM_MEMORY");
    assert.match(String(mem.body.message), /4096 MiB/);
    const cpu = await call(url, keyA, "POST", "/v1/vms", { template: { vcpuCount: 3 } });
    assert.equal(cpu.status, 403);
    assert.equal(cpu.body.code, "VCPU_OVER_PLAN_LIMIT");
    const disk = await call(url, keyA, "POST", "/v1/vms", { rootfsSizeGb: 100 });
    assert.equal(disk.status, 403);
    assert.equal(disk.body.code, "ROOTFS_OVER_PLAN_LIMIT");
    assert.equal(disk.body.reason, "VM_DISK");
    assert.equal(await engineVmCount(), before, "no engine VM was made");
    assert.deepEqual((await call(url, keyA, "GET", "/v1/vms")).body.vms, [], "no row either");
  });

  it("through the official client, a create refused by admission throws at once with the code (no retry loop)", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const fs = client(t.get().url, t.get().keyA);
    // The client reads a top-level memSizeGb (it moves it into `template`); its .d.mts omits the field.
    const big = { memSizeGb: 1024 } as unknown as Parameters<typeof fs.vms.create>[0];
    const t0 = performance.now();
    const err = await rejectsWith(
      Promise.race([fs.vms.create(big), new Promise((_, reject) => setTimeout(() => reject(new Error("still retrying after 10 s")), 10_000).unref())]),
      "MemOverPlanLimitError",
      "MEM_OVER_PLAN_LIMIT",
    );
    assert.ok(performance.now() - t0 < 10_000);
    assert.match(err.message, /maximum of 4096 MiB/);
  });

  it("running-VM cap: two concurrent creates at a limit of 1 give exactly one VM; then the VM cap; the client throws at once", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, server } = t.get();
    const key = server.keys.createKey("carol").key;
    const made: string[] = [];
    try {
      const both = await Promise.all([call(url, key, "POST", "/v1/vms", { idleTimeoutSeconds: null }), call(url, key, "POST", "/v1/vms", { idleTimeoutSeconds: null })]);
      const ok = both.filter((r) => r.status === 200);
      const refused = both.filter((r) => r.status !== 200);
      made.push(...ok.map((r) => r.body.id as string));
      assert.equal(ok.length, 1, JSON.stringify(both.map((r) => r.body)));
      assert.equal(refused[0]?.status, 403);
      assert.equal(refused[0]?.body.code, "VM_LIMIT_EXCEEDED");
      assert.equal(refused[0]?.body.reason, "ACCOUNT_RUNNING_VMS");
      assert.equal(((await call(url, key, "GET", "/v1/vms")).body.vms as unknown[]).length, 1, "one row");

      // A stopped VM frees its running slot, not its VM slot.
      const first = made[0] as string;
      assert.equal((await call(url, key, "POST", `/v1/vms/${first}/stop`)).status, 200);
      const second = await call(url, key, "POST", "/v1/vms", { idleTimeoutSeconds: null });
      assert.equal(second.status, 200, JSON.stringify(second.body));
      made.push(second.body.id as string);
      const start = await call(url, key, "POST", `/v1/vms/${first}/start`);
      assert.equal(start.status, 403);
      assert.equal(start.body.reason, "ACCOUNT_RUNNING_VMS");
      const fork = await call(url, key, "POST", `/v1/vms/${second.body.id as string}/fork`, { count: 1 });
      assert.equal(fork.body.code, "VM_LIMIT_EXCEEDED");
      assert.equal(fork.body.reason, "ACCOUNT_VMS");

      const before = await engineVmCount();
      const fs = client(url, key);
      const t0 = performance.now();
      const err = await rejectsWith(
        Promise.race([fs.vms.create(), new Promise((_, reject) => setTimeout(() => reject(new Error("still retrying after 10 s")), 10_000).unref())]),
        "VmLimitExceededError",
        "VM_LIMIT_EXCEEDED",
      );
      assert.ok(performance.now() - t0 < 10_000);
      assert.match(err.message, /at most 2 VMs, you have 2/);
      assert.equal(await engineVmCount(), before);
      // Other accounts are not affected by carol's caps.
      assert.equal((await call(url, t.get().keyB, "GET", "/v1/vms")).status, 200);
    } finally {
      for (const id of made) await call(url, key, "DELETE", `/v1/vms/${id}`);
    }
  });

  it("snapshot cap: the second snapshot answers SNAPSHOT_LIMIT_EXCEEDED; deleting one makes room", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const vm = (await call(url, keyA, "POST", "/v1/vms", { idleTimeoutSeconds: null })).body.id as string;
    try {
      const s1 = await call(url, keyA, "POST", `/v1/vms/${vm}/snapshot`, {});
      assert.equal(s1.status, 200, JSON.stringify(s1.body));
      const s2 = await call(url, keyA, "POST", `/v1/vms/${vm}/snapshot`, {});
      assert.equal(s2.status, 403);
      assert.equal(s2.body.code, "SNAPSHOT_LIMIT_EXCEEDED");
      assert.equal(s2.body.reason, "ACCOUNT_SNAPSHOTS");
      assert.equal(((await call(url, keyA, "GET", "/v1/vms/snapshots")).body.snapshots as unknown[]).length, 1);
      assert.equal((await call(url, keyA, "DELETE", `/v1/vms/snapshots/${s1.body.snapshotId as string}`)).status, 200);
      const s3 = await call(url, keyA, "POST", `/v1/vms/${vm}/snapshot`, {});
      assert.equal(s3.status, 200);
      await call(url, keyA, "DELETE", `/v1/vms/snapshots/${s3.body.snapshotId as string}`);
    } finally {
      await call(url, keyA, "DELETE", `/v1/vms/${vm}`);
    }
  });

  it("concurrent execs over the account cap answer 429 at once; the execs under the cap finish normally", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyB } = t.get();
    const vm = (await call(url, keyB, "POST", "/v1/vms", { idleTimeoutSeconds: null })).body.id as string;
    try {
      const running = [1, 2].map((n) => call(url, keyB, "POST", `/v1/vms/${vm}/exec-await`, { command: `sleep 3; echo ${n}`, timeoutMs: 30_000 }));
      await new Promise((r) => setTimeout(r, 1000));
      const t0 = performance.now();
      const over = await call(url, keyB, "POST", `/v1/vms/${vm}/exec-await`, { command: "echo three" });
      assert.ok(performance.now() - t0 < 1000, "refused at once");
      assert.equal(over.status, 429);
      assert.equal(over.body.code, "SERVICE_UNAVAILABLE");
      assert.equal(over.body.reason, "EXEC_CONCURRENCY");
      const done = await Promise.all(running);
      assert.deepEqual(
        done.map((r) => [r.status, r.body.stdout]),
        [
          [200, "1\n"],
          [200, "2\n"],
        ],
      );
      const after = await call(url, keyB, "POST", `/v1/vms/${vm}/exec-await`, { command: "echo again" });
      assert.equal(after.body.stdout, "again\n", "the slots were released");
    } finally {
      await call(url, keyB, "DELETE", `/v1/vms/${vm}`);
    }
  });

  it("PTY connections and exec-streams count against the account's caps; closing one frees its slot", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyB } = t.get();
    const vm = (await call(url, keyB, "POST", "/v1/vms", { idleTimeoutSeconds: null })).body.id as string;
    try {
      const first = await connect(wsUrl(url, `/v1/vms/${vm}/pty`), keyB);
      assert.ok(first.ws, JSON.stringify(first.body));
      await waitForMessages(first, (m) => m.some((x) => !x.binary && String(x.data).includes("sessionInfo")));
      const second = await connect(wsUrl(url, `/v1/vms/${vm}/pty`), keyB);
      assert.equal(second.status, 429);
      assert.equal(second.body?.code, "SESSION_CAP_REACHED");
      assert.equal((second.body as { reason?: string }).reason, "PTY_CONCURRENCY");
      await new Promise<void>((r) => {
        first.ws?.once("close", () => r());
        first.ws?.close();
      });
      await waitUntil(() => t.get().server.svc.quotas.inFlight({ id: accountId(t.get().server.svc, vm) }).ptys === 0);
      const third = await connect(wsUrl(url, `/v1/vms/${vm}/pty`), keyB);
      assert.ok(third.ws, "the slot was freed");
      third.ws?.close();

      // An exec-stream and an exec-await take the two exec slots; a third exec waits its turn (429).
      const stream = await connect(wsUrl(url, `/v1/vms/${vm}/exec-stream?command=${encodeURIComponent("sleep 30")}`), keyB);
      assert.ok(stream.ws, JSON.stringify(stream.body));
      const awaiting = call(url, keyB, "POST", `/v1/vms/${vm}/exec-await`, { command: "sleep 2; echo ok", timeoutMs: 30_000 });
      await new Promise((r) => setTimeout(r, 500));
      const over = await connect(wsUrl(url, `/v1/vms/${vm}/exec-stream?command=true`), keyB);
      assert.equal(over.status, 429);
      assert.equal((over.body as { reason?: string }).reason, "EXEC_CONCURRENCY");
      assert.equal((await awaiting).body.stdout, "ok\n");
      stream.ws?.close();
    } finally {
      await call(url, keyB, "DELETE", `/v1/vms/${vm}`);
    }
  });
});

function accountId(svc: { rows: { allVms(): Array<{ id: string; account_id: string }> } }, vmId: string): string {
  return svc.rows.allVms().find((r) => r.id === vmId)?.account_id ?? "";
}

async function waitUntil(pred: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Memory snapshots and forks through the API, on real gVisor sandboxes (netstack, the default):
 * a process counting in memory counts on in a VM created from a memory snapshot and in each of
 * three forks made by the official freestyle@0.1.63 client's `fork` (each on its own); a listening
 * TCP server survives and its preview URL works in the copy; v5's snapshot takes memory where it
 * can; bad input (a string for `memory`, a stopped VM, a runc VM) gets its status and code and
 * leaves nothing; a memory snapshot over the account's snapshot bytes is refused and leaves nothing.
 */
import assert from "node:assert/strict";
import http from "node:http";
import { describe, it } from "node:test";
import type { RunningServer } from "../src/index.js";
import { ownerLabel } from "../src/vms/provisioning.js";
import { client, type Vm } from "../test-support/client.js";
import { call, useServer } from "../test-support/harness.js";
import { VM_NODE } from "../test-support/preview-app.js";

/** Where the counter writes its latest value (a file in the VM, rewritten 20 times a second). */
const COUNT_FILE = "/tmp/count";
/**
 * A shell loop counting in its own memory (a VM that did not resume it has none); answers its pid
 * once the first value is written.
 */
const COUNTER = `setsid sh -c 'i=0; while :; do i=$((i+1)); echo $i > ${COUNT_FILE}.new && mv ${COUNT_FILE}.new ${COUNT_FILE}; sleep 0.05; done' >/dev/null 2>&1 </dev/null & pid=$!; while [ ! -e ${COUNT_FILE} ]; do sleep 0.01; done; echo $pid`;
/** How long a copy may take to show its counter moving (it moves 20 times a second when alive). */
const COUNTING_WAIT_MS = 15_000;

type Exec = (command: string) => Promise<{ stdout?: string | null; statusCode?: number | null }>;

async function count(exec: Exec): Promise<number> {
  const r = await exec(`cat ${COUNT_FILE}`);
  assert.equal(r.statusCode, 0, `no counter file: ${JSON.stringify(r)}`);
  return Number(r.stdout?.trim());
}

/** Resolves with the counter's value once it is past `after`; a counter that does not move fails. */
async function countsPast(what: string, exec: Exec, after: number): Promise<number> {
  const deadline = Date.now() + COUNTING_WAIT_MS;
  for (;;) {
    const n = await count(exec);
    if (n > after) return n;
    if (Date.now() > deadline) throw new Error(`${what}: the counter stays at ${n}, not past ${after}: its process does not run`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const execOf = (vm: Vm): Exec => (command) => vm.exec(command);

/** The engine's and the database's view of the account, to check that a refusal left nothing. */
async function footprint(server: RunningServer): Promise<{ engineVms: number; engineSnaps: number; intents: number }> {
  return { engineVms: (await server.engine.listVms()).length, engineSnaps: (await server.engine.listSnapshots()).length, intents: server.svc.rows.intentTokens().size };
}

/** One GET to a preview host (Node does not resolve `*.localhost`, so the Host header is set). */
function previewGet(serverUrl: string, host: string, key: string): Promise<{ status: number; body: string }> {
  const u = new URL(serverUrl);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: "/", headers: { host, authorization: `Bearer ${key}` } }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

async function targetGauge(url: string, key: string): Promise<string | undefined> {
  const res = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${key}` } });
  return /^capsule_memory_restore_target_ready (\d+)$/m.exec(await res.text())?.[1];
}

/** Waits until /metrics says a restore target made ahead waits (or, `ready` false, none does). */
async function targetReady(url: string, key: string, ready: boolean): Promise<void> {
  const deadline = Date.now() + COUNTING_WAIT_MS;
  for (;;) {
    const value = await targetGauge(url, key);
    if (value === (ready ? "1" : "0")) return;
    if (Date.now() > deadline) throw new Error(`capsule_memory_restore_target_ready is ${value ?? "absent"}, not ${ready ? 1 : 0}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("memory snapshots and forks through the API", () => {
  const t = useServer();

  it("a counter counts on after snapshot({memory: true}) and a create from it; the snapshot says it holds memory and its size", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const fs = client(url, keyA);
    const { vm: source } = await fs.vms.create({ idleTimeoutSeconds: null });
    const made: Vm[] = [source];
    try {
      assert.equal((await source.exec(COUNTER)).statusCode, 0);
      const before = await countsPast("source", execOf(source), 0);
      // The official client sends the options object as the body: `memory` is Capsule's extension.
      const { snapshotId } = await source.snapshot({ memory: true } as Parameters<Vm["snapshot"]>[0]);
      const info = await call(url, keyA, "GET", `/v1/vms/snapshots/${snapshotId}`);
      assert.equal(info.status, 200);
      assert.equal(info.body.memory, true);
      assert.ok((info.body.memoryBytes as number) > 0, "a memory image has bytes");
      assert.ok((info.body.sizeBytes as number) >= (info.body.memoryBytes as number), "sizeBytes includes the memory image");

      const { vm: copy } = await fs.vms.create({ snapshotId, idleTimeoutSeconds: null });
      made.push(copy);
      const resumed = await count(execOf(copy));
      assert.ok(resumed >= before, `the copy's counter resumed where it was (${resumed} >= ${before}), it did not start over`);
      await countsPast("copy", execOf(copy), resumed);
      await countsPast("source, after the snapshot", execOf(source), before);

      // The engine makes a restore target for the next create from this snapshot (on /metrics);
      // that create takes it and resumes the processes like the first.
      await targetReady(url, keyA, true);
      const { vm: second } = await fs.vms.create({ snapshotId, idleTimeoutSeconds: null });
      made.push(second);
      // Taken: none waits until the next is made (200 ms after the create, then its making).
      assert.equal(await targetGauge(url, keyA), "0", "the create took the target");
      assert.ok((await count(execOf(second))) >= before, "the second copy resumed the counter too");
      await countsPast("second copy", execOf(second), await count(execOf(second)));
      assert.notEqual((await second.exec("hostname")).stdout, (await copy.exec("hostname")).stdout);
      // Deleting the snapshot removes the target.
      await targetReady(url, keyA, true);
      assert.equal((await call(url, keyA, "DELETE", `/v1/vms/snapshots/${snapshotId}`)).status, 200);
      await targetReady(url, keyA, false);
    } finally {
      for (const vm of made) await vm.delete().catch(() => undefined);
    }
  });

  it("fork({count: 3}) through the official client: three live copies, each counting on its own, each its own hostname and disk; the source counts on", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const fs = client(url, keyA);
    const { vm: source, vmId: sourceId } = await fs.vms.create({ idleTimeoutSeconds: null });
    const made: Vm[] = [source];
    try {
      const pid = (await source.exec(COUNTER)).stdout?.trim();
      const before = await countsPast("source", execOf(source), 0);
      const { forks } = await source.fork({ count: 3 });
      assert.equal(forks.length, 3);
      made.push(...forks.map((f) => f.vm));
      const ids = forks.map((f) => f.vmId);
      assert.equal(new Set([sourceId, ...ids]).size, 4, "four different VMs");
      for (const f of forks) {
        const n = await count(execOf(f.vm));
        assert.ok(n >= before, `${f.vmId}: resumed at ${n}, not started over`);
        await countsPast(f.vmId, execOf(f.vm), n);
        assert.equal((await f.vm.exec("hostname")).stdout?.trim(), f.vmId, "a copy's hostname is its own id");
      }
      // On its own: the first copy's counter stopped and a file written there touch neither the others nor the source.
      const [first, ...rest] = forks as [(typeof forks)[number], ...typeof forks];
      assert.equal((await first.vm.exec(`kill ${pid} && echo only-here > /root/mine`)).statusCode, 0);
      const stoppedAt = await count(execOf(first.vm));
      for (const f of rest) {
        await countsPast(`${f.vmId} after another copy's counter stopped`, execOf(f.vm), await count(execOf(f.vm)));
        assert.equal((await f.vm.exec("test -e /root/mine")).statusCode, 1, `${f.vmId} does not see the first copy's file`);
      }
      await countsPast("source after the fork", execOf(source), await count(execOf(source)));
      assert.equal((await source.exec("test -e /root/mine")).statusCode, 1, "the source does not see the copy's file");
      assert.equal(await count(execOf(first.vm)), stoppedAt, "the first copy's counter is gone, the others' are their own");
    } finally {
      for (const vm of made) await vm.delete().catch(() => undefined);
    }
  });

  it("a listening TCP server survives a memory snapshot: its preview URL in the copy reaches the same process", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, server } = t.get();
    const port = 8123;
    const app = `const http = require("http"); const born = Date.now() + "-" + process.pid; let hits = 0; http.createServer((q, s) => s.end(born + " " + ++hits)).listen(${port}, "127.0.0.1", () => console.log("ready"));`;
    const fs = client(url, keyA);
    const { vm: source, vmId } = await fs.vms.create({ idleTimeoutSeconds: null });
    const made: Vm[] = [source];
    try {
      await source.fs.writeTextFile("/srv/app.js", app);
      const started = await source.exec(`setsid ${VM_NODE} /srv/app.js >/srv/app.log 2>&1 </dev/null & for i in $(seq 200); do grep -q ready /srv/app.log && exit 0; sleep 0.05; done; cat /srv/app.log; exit 1`);
      assert.equal(started.statusCode, 0, started.stdout ?? "");
      const first = await previewGet(url, `${port}-${vmId}.localhost:${server.port}`, keyA);
      assert.equal(first.status, 200, first.body);
      const [born, hits] = first.body.split(" ");
      const { snapshotId } = await source.snapshot({ memory: true } as Parameters<Vm["snapshot"]>[0]);
      const { vm: copy, vmId: copyId } = await fs.vms.create({ snapshotId, idleTimeoutSeconds: null });
      made.push(copy);
      const there = await previewGet(url, `${port}-${copyId}.localhost:${server.port}`, keyA);
      assert.equal(there.status, 200, there.body);
      assert.equal(there.body, `${born} ${Number(hits) + 1}`, "the copy's server is the source's process, its hit count carried on");
    } finally {
      for (const vm of made) await vm.delete().catch(() => undefined);
    }
  });

  it("v5: POST /v5/vms/{id}/snapshot takes memory and disk (contents memory+disk); a v5 create from it resumes the processes", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const created = await call(url, keyA, "POST", "/v5/vms", { firewall: { rules: [] } });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const vmId = created.body.id as string;
    const exec: (id: string) => Exec = (id) => async (command) => (await call(url, keyA, "POST", `/v5/vms/${id}/exec-await`, { command })).body as { stdout: string; statusCode: number };
    let copyId: string | undefined;
    try {
      await exec(vmId)(COUNTER);
      const before = await countsPast("source", exec(vmId), 0);
      const snap = await call(url, keyA, "POST", `/v5/vms/${vmId}/snapshot`, {});
      assert.equal(snap.status, 200, JSON.stringify(snap.body));
      const data = snap.body.snapshot as { contents: string; memoryBytes: number; sizeBytes: number };
      assert.equal(data.contents, "memory+disk");
      assert.ok(data.memoryBytes > 0 && data.sizeBytes >= data.memoryBytes);
      const copy = await call(url, keyA, "POST", "/v5/vms", { snapshotId: snap.body.snapshotId, firewall: { rules: [] } });
      assert.equal(copy.status, 200, JSON.stringify(copy.body));
      copyId = copy.body.id as string;
      await countsPast("v5 copy", exec(copyId), before);
    } finally {
      for (const id of [vmId, copyId]) if (id) await call(url, keyA, "DELETE", `/v5/vms/${id}`);
    }
  });

  it("bad input: a string for memory (400 VALIDATION_ERROR), a stopped VM (400 VM_NOT_RUNNING), a runc VM (400 BAD_REQUEST MEMORY_UNSUPPORTED); nothing is left half-made", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, server } = t.get();
    const created = await call(url, keyA, "POST", "/v1/vms", { idleTimeoutSeconds: null });
    const vmId = created.body.id as string;
    // A runc VM of alice's, made as the API makes VMs (intent, owner label, row): the API creates only runsc VMs.
    const alice = server.keys.authenticate(keyA);
    assert.ok(alice);
    const intent = server.svc.rows.beginIntent(alice.id, "vm");
    const runc = await server.engine.createVm({ runtime: "runc", egress: "none", owner: ownerLabel(alice.id, intent) });
    server.svc.rows.insertVm({ id: runc.id, account_id: alice.id, name: null, idle_timeout_seconds: null, activity_threshold_bytes: 0, created_at: runc.createdAt });
    server.svc.rows.endIntent(intent);
    try {
      const before = await footprint(server);
      for (const [route, body] of [["snapshot", { memory: "yes" }], ["fork", { count: 1, memory: 1 }]] as const) {
        const r = await call(url, keyA, "POST", `/v1/vms/${vmId}/${route}`, body);
        assert.equal(r.status, 400, `${route}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.code, "VALIDATION_ERROR", route);
        assert.match(r.body.message ?? "", /memory/, `${route}: the message names the field`);
      }
      for (const route of ["snapshot", "fork"]) {
        const r = await call(url, keyA, "POST", `/v1/vms/${runc.id}/${route}`, { memory: true });
        assert.equal(r.status, 400, `runc ${route}: ${JSON.stringify(r.body)}`);
        assert.deepEqual([r.body.code, r.body.reason], ["BAD_REQUEST", "MEMORY_UNSUPPORTED"], `runc ${route}`);
      }
      assert.deepEqual(await footprint(server), before, "nothing was made by the refused requests");
      // Without `memory: true` a runc VM still snapshots and forks, from its disk.
      const disk = await call(url, keyA, "POST", `/v1/vms/${runc.id}/snapshot`, {});
      assert.equal(disk.status, 200, JSON.stringify(disk.body));
      assert.equal((await call(url, keyA, "GET", `/v1/vms/snapshots/${disk.body.snapshotId as string}`)).body.memory, false);
      const fork = await call(url, keyA, "POST", `/v1/vms/${runc.id}/fork`, {});
      assert.equal(fork.status, 200, JSON.stringify(fork.body));
      for (const f of fork.body.forks as Array<{ id: string }>) await call(url, keyA, "DELETE", `/v1/vms/${f.id}`);
      await call(url, keyA, "DELETE", `/v1/vms/snapshots/${disk.body.snapshotId as string}`);

      assert.equal((await call(url, keyA, "POST", `/v1/vms/${vmId}/stop`)).status, 200);
      const stopped = await footprint(server);
      for (const route of ["snapshot", "fork"]) {
        const r = await call(url, keyA, "POST", `/v1/vms/${vmId}/${route}`, { memory: true });
        assert.equal(r.status, 400, `stopped ${route}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.code, "VM_NOT_RUNNING", `stopped ${route}`);
      }
      assert.deepEqual(await footprint(server), stopped, "nothing was made for the stopped VM");
    } finally {
      await call(url, keyA, "DELETE", `/v1/vms/${vmId}`);
      await call(url, keyA, "DELETE", `/v1/vms/${runc.id}`);
    }
  });
});

describe("memory snapshots and the account's snapshot bytes", () => {
  /** Far above a fresh VM's disk layer, far below any memory image of a VM with Node in it. */
  const SNAPSHOT_BYTES = 4 * 1024 * 1024;
  const t = useServer({ quotas: { snapshotBytes: SNAPSHOT_BYTES } });

  it("a memory image counts in the account's snapshot bytes: the next memory snapshot is refused (403 ACCOUNT_SNAPSHOT_BYTES) and nothing is left", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, server } = t.get();
    const fs = client(url, keyA);
    const { vm, vmId } = await fs.vms.create({ idleTimeoutSeconds: null });
    try {
      const disk = await call(url, keyA, "POST", `/v1/vms/${vmId}/snapshot`, {});
      assert.equal(disk.status, 200, JSON.stringify(disk.body));
      const diskInfo = await call(url, keyA, "GET", `/v1/vms/snapshots/${disk.body.snapshotId as string}`);
      assert.ok((diskInfo.body.sizeBytes as number) < SNAPSHOT_BYTES, `the disk snapshot alone stays under the cap (${diskInfo.body.sizeBytes as number} bytes)`);
      const mem = await call(url, keyA, "POST", `/v1/vms/${vmId}/snapshot`, { memory: true });
      assert.equal(mem.status, 200, JSON.stringify(mem.body));
      const memInfo = await call(url, keyA, "GET", `/v1/vms/snapshots/${mem.body.snapshotId as string}`);
      assert.ok((memInfo.body.sizeBytes as number) + (diskInfo.body.sizeBytes as number) >= SNAPSHOT_BYTES, `the memory image puts the account at the cap (${memInfo.body.sizeBytes as number} bytes)`);

      const before = await footprint(server);
      const refused = await call(url, keyA, "POST", `/v1/vms/${vmId}/snapshot`, { memory: true });
      assert.equal(refused.status, 403, JSON.stringify(refused.body));
      assert.deepEqual([refused.body.code, refused.body.reason], ["SNAPSHOT_LIMIT_EXCEEDED", "ACCOUNT_SNAPSHOT_BYTES"]);
      assert.deepEqual(await footprint(server), before, "no snapshot, VM or intent was made");
      assert.equal((await vm.exec("echo still-here")).stdout, "still-here\n", "the source runs on");
    } finally {
      await vm.delete().catch(() => undefined);
    }
  });
});

/**
 * The warm pool on a real server and real sandboxes: a create claims a pre-booted VM that is as
 * fresh and isolated as a cold one (and gets the services it asks for), frozen while it waited
 * and answering at once once claimed; a snapshot that was just booted gets warm VMs too; the pool
 * counts against the host, never the account, and gives capacity back to a create; it survives a
 * restart (adopting its VMs, frozen again, or deleting the ones it no longer wants); a create never waits for a
 * refill; and many create/exec/delete cycles leave nothing behind.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import { describe, it } from "node:test";
import { countResources } from "@capsule/engine/test-support";
import { startServer, type RunningServer, type StartOptions } from "../src/index.js";
import { isPoolOwner } from "../src/vms/pool.js";
import { call, destroyDataDir, sandboxGap, scratchDir, testServerOptions } from "../test-support/harness.js";

const POOL_WAIT_MS = 60_000;
/** A claimed VM's first exec answers within this (a VM left frozen would not answer at all). */
const CLAIMED_EXEC_MS = 5_000;

function start(dataDir: string, extra: Partial<StartOptions>): Promise<RunningServer> {
  return startServer(testServerOptions(dataDir, extra));
}

async function poolReady(server: RunningServer, n: number): Promise<void> {
  const deadline = Date.now() + POOL_WAIT_MS;
  while (server.svc.pool.stats().ready < n) {
    if (Date.now() > deadline) throw new Error(`the pool did not reach ${n} warm VMs: ${JSON.stringify(server.svc.pool.stats())}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function poolVmIds(server: RunningServer): Promise<string[]> {
  return (await server.engine.listVms()).filter((v) => isPoolOwner(v.owner)).map((v) => v.id);
}

/** Whether the VM's freezer cgroup (v1 or v2, as the engine's runtime lays it out) is frozen. */
async function isFrozen(id: string): Promise<boolean> {
  const v1 = await fs.readFile(`/sys/fs/cgroup/freezer/${id}/freezer.state`, "utf8").catch(() => undefined);
  if (v1 !== undefined) return v1.trim() === "FROZEN";
  return /^frozen 1$/m.test(await fs.readFile(`/sys/fs/cgroup/${id}/cgroup.events`, "utf8"));
}

async function frozenStates(ids: string[]): Promise<boolean[]> {
  return Promise.all(ids.map(isFrozen));
}

/** What a tenant would look at to tell one VM from another (and from an earlier tenant's). */
interface Identity {
  bootId: string;
  hostname: string;
  marker: string;
  users: string;
  ip: string;
  files: string;
}

async function identity(url: string, key: string, id: string): Promise<Identity> {
  const probe = [
    "cat /proc/sys/kernel/random/boot_id",
    "hostname",
    "test -e /tmp/.bench_ephemeral_check && echo marker-found || echo no-marker",
    "cut -d: -f1 /etc/passwd | sort | tr '\\n' ,; echo",
    "hostname -I",
    "ls -A /root /tmp | tr '\\n' ,; echo",
  ].join("; ");
  const r = await call(url, key, "POST", `/v1/vms/${id}/exec-await`, { command: probe });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const [bootId, hostname, marker, users, ip, files] = String(r.body.stdout).split("\n");
  return { bootId: bootId ?? "", hostname: hostname ?? "", marker: marker ?? "", users: users ?? "", ip: ip ?? "", files: files ?? "" };
}

async function withServer(extra: Partial<StartOptions>, fn: (server: RunningServer, dataDir: string) => Promise<void>): Promise<void> {
  const dataDir = await scratchDir();
  let server: RunningServer | undefined;
  try {
    server = await start(dataDir, extra);
    await fn(server, dataDir);
  } finally {
    await server?.close();
    await destroyDataDir(dataDir);
  }
}

describe("warm pool", () => {
  it("a pooled VM is as fresh and isolated as a cold one, goes to one create only, and gets its create's services", async (ctx) => {
    const gap = await sandboxGap();
    if (gap) return ctx.skip(gap);
    await withServer({ pool: { size: 2, hotSize: 0 } }, async (server) => {
      const key = server.keys.createKey("alice").key;
      const other = server.keys.createKey("bob").key;
      await poolReady(server, 2);
      const warmIds = await poolVmIds(server);
      assert.deepEqual(await frozenStates(warmIds), [true, true], "warm VMs wait frozen");

      const a = (await call(server.url, key, "POST", "/v1/vms", { name: "first" })).body;
      assert.ok(warmIds.includes(a.id as string), "the create got a warm VM");
      assert.equal(server.svc.pool.stats().hits, 1);
      assert.equal(await isFrozen(a.id as string), false, "thawed when claimed");
      assert.equal(await isFrozen(warmIds.find((id) => id !== a.id) as string), true, "the other still waits frozen");
      const t0 = Date.now();
      assert.equal((await call(server.url, key, "POST", `/v1/vms/${a.id}/exec-await`, { command: "true" })).body.statusCode, 0);
      assert.ok(Date.now() - t0 < CLAIMED_EXEC_MS, `the claimed VM's first exec took ${Date.now() - t0} ms`);
      const idA = await identity(server.url, key, a.id as string);
      assert.equal(idA.hostname, a.id, "hostname is the VM's own id");
      assert.equal(idA.marker, "no-marker");
      // The tenant marks its VM, as the TTI probe does; the next tenant must not see it.
      await call(server.url, key, "POST", `/v1/vms/${a.id}/exec-await`, { command: "touch /tmp/.bench_ephemeral_check /root/secret" });

      // The next one's create asks for services: a warm VM gets them installed and started before the answer.
      const services = [
        { name: "prep", mode: "oneshot", exec: ["touch /var/tmp/prepared"] },
        { name: "web", mode: "service", exec: ["echo up in $(hostname); exec sleep 1000"], after: ["prep"] },
      ];
      const b = (await call(server.url, other, "POST", "/v1/vms", { systemd: { services } })).body;
      assert.ok(warmIds.includes(b.id as string));
      assert.equal(server.svc.pool.stats().hits, 2);
      assert.notEqual(b.id, a.id);
      const web = (await call(server.url, other, "GET", `/v1/vms/${b.id}/systemd/services/web/status`)).body;
      assert.deepEqual([web.activeState, web.subState], ["active", "running"]);
      assert.equal((await call(server.url, other, "GET", `/v1/vms/${b.id}/systemd/services/prep/status`)).body.subState, "exited");
      assert.equal((await call(server.url, other, "POST", `/v1/vms/${b.id}/exec-await`, { command: "test -e /var/tmp/prepared" })).body.statusCode, 0);
      const logs = (await call(server.url, other, "GET", `/v1/vms/${b.id}/systemd/services/web/logs`)).body.logs as Array<{ message: string }>;
      assert.ok(logs.some((l) => l.message === `up in ${b.id}`), JSON.stringify(logs));
      const idB = await identity(server.url, other, b.id as string);
      assert.equal(idB.marker, "no-marker");
      assert.notEqual(idB.bootId, idA.bootId);
      assert.notEqual(idB.ip, idA.ip);
      assert.equal(idB.hostname, b.id);
      assert.doesNotMatch(idB.files, /secret/);

      // Owned by the tenant that claimed it, nobody else; named as the create asked.
      assert.equal((await call(server.url, other, "GET", `/v1/vms/${a.id}`)).status, 404);
      const listed = (await call(server.url, key, "GET", "/v1/vms")).body.vms as Array<{ id: string; name: string | null }>;
      assert.deepEqual(listed.map((v) => [v.id, v.name]), [[a.id, "first"]]);
      assert.equal((await server.engine.getVm(a.id as string)).owner?.startsWith("api:"), true);

      // A cold VM (the pool taken away) looks the same from inside: same users, same files.
      await server.svc.pool.close();
      const cold = (await call(server.url, key, "POST", "/v1/vms", {})).body;
      assert.ok(!warmIds.includes(cold.id as string));
      const idCold = await identity(server.url, key, cold.id as string);
      assert.equal(idCold.users, idB.users);
      assert.equal(idCold.files, idB.files);
      assert.notEqual(idCold.bootId, idB.bootId);
    });
  });

  it("a snapshot booted once gets a warm VM: the next create from it claims one, with the snapshot's files", async (ctx) => {
    const gap = await sandboxGap();
    if (gap) return ctx.skip(gap);
    await withServer({ pool: { size: 0, hotSize: 1 } }, async (server) => {
      const key = server.keys.createKey("alice").key;
      const src = (await call(server.url, key, "POST", "/v1/vms", {})).body.id as string;
      await call(server.url, key, "POST", `/v1/vms/${src}/exec-await`, { command: "echo from-snapshot > /root/made" });
      const snap = (await call(server.url, key, "POST", `/v1/vms/${src}/snapshot`, {})).body.snapshotId as string;
      assert.ok(snap);

      const misses = server.svc.pool.stats().misses;
      const first = (await call(server.url, key, "POST", "/v1/vms", { snapshotId: snap })).body.id as string;
      assert.equal(server.svc.pool.stats().misses, misses + 1, "the first create from the snapshot booted cold");
      await poolReady(server, 1);
      const second = (await call(server.url, key, "POST", "/v1/vms", { snapshotId: snap })).body.id as string;
      assert.equal(server.svc.pool.stats().hits, 1, "the second create claimed the warm VM");
      for (const id of [first, second]) {
        const r = await call(server.url, key, "POST", `/v1/vms/${id}/exec-await`, { command: "cat /root/made" });
        assert.equal(r.body.stdout, "from-snapshot\n");
      }
      const ids = await identity(server.url, key, second);
      assert.equal(ids.hostname, second);

      // Another account cannot claim that warm VM: the snapshot is not theirs.
      await poolReady(server, 1);
      const other = server.keys.createKey("bob").key;
      const refused = await call(server.url, other, "POST", "/v1/vms", { snapshotId: snap });
      assert.equal(refused.status, 404);
      assert.equal(server.svc.pool.stats().ready, 1);

      // Deleting the snapshot takes its warm VMs with it.
      const warm = await poolVmIds(server);
      assert.equal(warm.length, 1);
      assert.equal((await call(server.url, key, "DELETE", `/v1/vms/snapshots/${snap}`)).status, 200);
      await server.engine.settled();
      assert.deepEqual(await poolVmIds(server), []);
    });
  });

  it("counts against the host, not the account; a create the host has no room for takes it back from the pool", async (ctx) => {
    const gap = await sandboxGap();
    if (gap) return ctx.skip(gap);
    // The host has room for two default VMs (2048 MiB each) and the account may own two VMs.
    await withServer({ pool: { size: 3, hotSize: 0 }, quotas: { vms: 2 }, admission: { hostMemoryMb: 4096, memoryOvercommit: 1 } }, async (server) => {
      const key = server.keys.createKey("alice").key;
      await poolReady(server, 2);
      await new Promise((r) => setTimeout(r, 1500)); // a pump or two more
      assert.equal((await poolVmIds(server)).length, 2, "no third warm VM: it would pass the host's capacity");

      // The two warm VMs do not count for the account: its first create claims one.
      const claimed = await call(server.url, key, "POST", "/v1/vms", {});
      assert.equal(claimed.status, 200, JSON.stringify(claimed.body));
      assert.equal(server.svc.pool.stats().hits, 1);
      // A VM of another size finds the host full (the tenant's VM and a warm one): the warm VM
      // gives its room back and the create is admitted.
      const small = await call(server.url, key, "POST", "/v1/vms", { memSizeGb: 0.25 });
      assert.equal(small.status, 200, JSON.stringify(small.body));
      await server.engine.settled();
      assert.deepEqual(await poolVmIds(server), [], "the warm VM was deleted to make room");
      // The account's own cap still holds.
      const third = await call(server.url, key, "POST", "/v1/vms", { memSizeGb: 0.25 });
      assert.equal(third.status, 403);
      assert.equal(third.body.code, "VM_LIMIT_EXCEEDED");
    });
  });

  it("survives a restart: the next server adopts its warm VMs, or deletes the ones it does not want", async (ctx) => {
    const gap = await sandboxGap();
    if (gap) return ctx.skip(gap);
    const dataDir = await scratchDir();
    let server: RunningServer | undefined;
    try {
      server = await start(dataDir, { pool: { size: 2, hotSize: 0 } });
      server.keys.createKey("alice");
      await poolReady(server, 2);
      const before = (await poolVmIds(server)).sort();
      const seen = new Set(before);
      await server.close();
      assert.deepEqual(await frozenStates(before), [true, true], "left frozen for the next server");

      server = await start(dataDir, { pool: { size: 2, hotSize: 0 } });
      assert.equal(server.svc.pool.stats().ready, 2, "warm again at once, no boot needed");
      assert.deepEqual((await poolVmIds(server)).sort(), before);
      assert.deepEqual(await frozenStates(before), [true, true], "recovery thawed them to probe them; adopted, they are frozen again");
      // An adopted VM is claimed like any other: thawed, it answers.
      const key = server.keys.createKey("bob").key;
      const claimed = (await call(server.url, key, "POST", "/v1/vms", {})).body;
      assert.ok(before.includes(claimed.id as string), "the create got an adopted warm VM");
      assert.equal((await call(server.url, key, "POST", `/v1/vms/${claimed.id}/exec-await`, { command: "true" })).body.statusCode, 0);
      await call(server.url, key, "DELETE", `/v1/vms/${claimed.id}`);
      await poolReady(server, 2);
      for (const id of await poolVmIds(server)) seen.add(id);
      await server.close();

      server = await start(dataDir, { pool: { size: 1, hotSize: 0 } });
      for (const id of await poolVmIds(server)) seen.add(id);
      await server.engine.settled();
      await new Promise((r) => setTimeout(r, 1500)); // a pump or two
      await server.engine.settled();
      assert.equal((await poolVmIds(server)).length, 1, "one over the new size is deleted");
      await server.close();

      server = await start(dataDir, { pool: { size: 0, hotSize: 0 } });
      await server.engine.settled();
      assert.deepEqual(await poolVmIds(server), [], "a server without a pool deletes the old pool's VMs");
      assert.deepEqual(await server.engine.listVms(), []);
      await server.close();
      server = undefined;
      const left = await countResources(dataDir, [...seen]);
      assert.deepEqual(Object.entries(left).filter(([, n]) => n > 0), [], "no host resources left");
    } finally {
      await server?.close();
      await destroyDataDir(dataDir);
    }
  });

  it("a create that finds the pool empty boots at once and does not wait for the refill in progress", async (ctx) => {
    const gap = await sandboxGap();
    if (gap) return ctx.skip(gap);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let refillsWaiting = 0;
    const poolBootGate = async () => {
      refillsWaiting++;
      await held;
    };
    try {
      await withServer({ pool: { size: 1, hotSize: 0 }, poolBootGate }, async (server) => {
        const key = server.keys.createKey("alice").key;
        while (refillsWaiting === 0) await new Promise((r) => setTimeout(r, 20));
        assert.equal(server.svc.pool.stats().booting, 1, "the refill is in progress, held");
        const r = await call(server.url, key, "POST", "/v1/vms", {});
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(server.svc.pool.stats().booting, 1, "and still held: the create did not wait for it");
        assert.equal(server.svc.pool.stats().misses, 1);
        const echo = await call(server.url, key, "POST", `/v1/vms/${r.body.id}/exec-await`, { command: "echo up" });
        assert.equal(echo.body.stdout, "up\n");
        release();
        await poolReady(server, 1);
      });
    } finally {
      release();
    }
  });

  it("100 create/exec/delete cycles with the pool on leave no VM and no host resource behind", async (ctx) => {
    const gap = await sandboxGap();
    if (gap) return ctx.skip(gap);
    const dataDir = await scratchDir();
    let server: RunningServer | undefined;
    try {
      server = await start(dataDir, { pool: { size: 2, hotSize: 0, bootConcurrency: 2 } });
      const key = server.keys.createKey("alice").key;
      await poolReady(server, 2);
      const bootIds = new Set<string>();
      const seen = new Set<string>();
      for (let i = 0; i < 100; i++) {
        const id = (await call(server.url, key, "POST", "/v1/vms", {})).body.id as string;
        seen.add(id);
        const r = await call(server.url, key, "POST", `/v1/vms/${id}/exec-await`, { command: "cat /proc/sys/kernel/random/boot_id" });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        bootIds.add(String(r.body.stdout));
        assert.equal((await call(server.url, key, "DELETE", `/v1/vms/${id}`)).status, 200);
      }
      assert.equal(bootIds.size, 100, "every VM had its own boot");
      assert.ok(server.svc.pool.stats().hits > 0, "some creates claimed warm VMs");
      await server.svc.pool.close();
      await server.engine.settled();
      // Only the pool's own warm VMs remain; deleting them leaves nothing at all.
      const left = await server.engine.listVms();
      assert.ok(left.every((v) => isPoolOwner(v.owner)), JSON.stringify(left));
      for (const vm of left) {
        seen.add(vm.id);
        await server.engine.deleteVm(vm.id, { wait: true });
      }
      await server.close();
      server = undefined;
      const res = await countResources(dataDir, [...seen]);
      assert.deepEqual(Object.entries(res).filter(([, n]) => n > 0), [], "no host resources left");
    } finally {
      await server?.close();
      await destroyDataDir(dataDir);
    }
  });
});

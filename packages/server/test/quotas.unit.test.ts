/** Admission and quota arithmetic, the config's quota sections, and race-free reservations (no sandboxes). */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { DEFAULT_LIMITS, type Engine, type SnapshotRecord, type VmInfo } from "@capsule/engine";
import { resolveConfig } from "../src/config.js";
import { openDb, type Db } from "../src/db.js";
import { ApiError } from "../src/errors.js";
import { KeyStore, type Account } from "../src/keys.js";
import { checkAccount, checkHost, checkSizing, DEFAULT_QUOTAS, Quotas, type AdmissionConfig } from "../src/quotas.js";
import { DEFAULT_POOL } from "../src/vms/pool.js";
import { Rows } from "../src/vms/rows.js";
import { scratchDir } from "../test-support/harness.js";

const ADM: AdmissionConfig = { memoryMb: 4096, vcpus: 2, diskMb: 20_480, memoryOvercommit: 1.5, cpuOvercommit: 2, hostMemoryMb: 8192, hostCpus: 2 };

function code(e: ApiError | undefined): [string, number, string | undefined] | undefined {
  return e && [e.code, e.status, e.extra.reason];
}

describe("sizing against the per-VM maximum", () => {
  it("allows up to the maximum, refuses one over with the client's codes", () => {
    assert.equal(checkSizing({ memoryMb: 4096, cpus: 2, diskMb: 20_480 }, ADM), undefined);
    assert.deepEqual(code(checkSizing({ memoryMb: 4097, cpus: 1, diskMb: 1 }, ADM)), ["MEM_OVER_PLAN_LIMIT", 403, "VM_MEMORY"]);
    assert.deepEqual(code(checkSizing({ memoryMb: 1024, cpus: 3, diskMb: 1 }, ADM)), ["VCPU_OVER_PLAN_LIMIT", 403, "VM_VCPUS"]);
    assert.deepEqual(code(checkSizing({ memoryMb: 1024, cpus: 1, diskMb: 20_481 }, ADM)), ["ROOTFS_OVER_PLAN_LIMIT", 403, "VM_DISK"]);
    const e = checkSizing({ memoryMb: 1024 * 1024, cpus: 1, diskMb: 1 }, ADM);
    assert.match(e?.message ?? "", /1048576 MiB.*4096 MiB.*memSizeGb 4/);
  });
});

describe("host capacity with overcommit", () => {
  it("fits exactly at host x ratio, and one more is a retryable 503 naming the resource", () => {
    // memory cap 8192 * 1.5 = 12288; CPU cap 2 * 2 = 4
    assert.equal(checkHost({ memoryMb: 10_240, cpus: 3 }, { memoryMb: 2048, cpus: 1 }, ADM), undefined);
    assert.deepEqual(code(checkHost({ memoryMb: 10_240, cpus: 0 }, { memoryMb: 2049, cpus: 1 }, ADM)), ["SERVICE_UNAVAILABLE", 503, "HOST_MEMORY"]);
    assert.deepEqual(code(checkHost({ memoryMb: 0, cpus: 3.5 }, { memoryMb: 1, cpus: 1 }, ADM)), ["SERVICE_UNAVAILABLE", 503, "HOST_CPU"]);
  });
});

describe("account limits", () => {
  it("count caps: current + adding must not exceed the limit; null is no limit", () => {
    assert.equal(checkAccount("vms", 2, 1, 3), undefined);
    assert.deepEqual(code(checkAccount("vms", 3, 1, 3)), ["VM_LIMIT_EXCEEDED", 403, "ACCOUNT_VMS"]);
    assert.deepEqual(code(checkAccount("runningVms", 1, 2, 2)), ["VM_LIMIT_EXCEEDED", 403, "ACCOUNT_RUNNING_VMS"]);
    assert.deepEqual(code(checkAccount("snapshots", 5, 1, 5)), ["SNAPSHOT_LIMIT_EXCEEDED", 403, "ACCOUNT_SNAPSHOTS"]);
    assert.deepEqual(code(checkAccount("concurrentExecs", 4, 1, 4)), ["SERVICE_UNAVAILABLE", 429, "EXEC_CONCURRENCY"]);
    assert.deepEqual(code(checkAccount("ptys", 2, 1, 2)), ["SESSION_CAP_REACHED", 429, "PTY_CONCURRENCY"]);
    assert.equal(checkAccount("vms", 1e9, 1, null), undefined);
    assert.match(checkAccount("vms", 3, 1, 3)?.message ?? "", /at most 3 VMs, you have 3.*delete VMs/);
  });

  it("snapshot bytes: refused once the bytes already used reach the cap", () => {
    assert.equal(checkAccount("snapshotBytes", 999, 0, 1000), undefined);
    assert.deepEqual(code(checkAccount("snapshotBytes", 1000, 0, 1000)), ["SNAPSHOT_LIMIT_EXCEEDED", 403, "ACCOUNT_SNAPSHOT_BYTES"]);
  });
});

describe("config: quotas and admission", () => {
  let dir: string;
  before(async () => {
    dir = await scratchDir();
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it("defaults, then the file, then env, then options, key by key; unknown keys and bad values refused", async () => {
    const d = resolveConfig({ dataDir: dir }, {});
    assert.deepEqual(d.quotas, DEFAULT_QUOTAS);
    assert.ok(d.admission.hostMemoryMb > 0 && d.admission.hostCpus >= 1);
    await fs.writeFile(path.join(dir, "capsule.json"), JSON.stringify({ quotas: { vms: 7, ptys: null }, admission: { memoryOvercommit: 3 } }));
    const c = resolveConfig({ dataDir: dir, quotas: { runningVms: 2 } }, { CAPSULE_QUOTAS: '{"vms": 9}', CAPSULE_ADMISSION: '{"hostCpus": 64}' });
    assert.deepEqual(c.quotas, { ...DEFAULT_QUOTAS, vms: 9, ptys: null, runningVms: 2 });
    assert.equal(c.admission.memoryOvercommit, 3);
    assert.equal(c.admission.hostCpus, 64);
    assert.throws(() => resolveConfig({ dataDir: dir, quotas: { vmz: 1 } as never }, {}), /quotas\.vmz is not a setting/);
    assert.throws(() => resolveConfig({ dataDir: dir }, { CAPSULE_QUOTAS: '{"vms": -1}' }), /quotas\.vms must be a positive number/);
    assert.throws(() => resolveConfig({ dataDir: dir }, { CAPSULE_ADMISSION: '{"memoryMb": null}' }), /admission\.memoryMb must be a positive number,/);
    // The warm pool: 0 turns a size off, sizes are whole VMs.
    assert.deepEqual(d.pool, DEFAULT_POOL);
    assert.deepEqual(resolveConfig({ dataDir: dir }, { CAPSULE_POOL: '{"size": 0, "hotSize": 0}' }).pool, { ...DEFAULT_POOL, size: 0, hotSize: 0 });
    assert.throws(() => resolveConfig({ dataDir: dir }, { CAPSULE_POOL: '{"size": 1.5}' }), /pool\.size must be a positive integer or 0/);
    assert.throws(() => resolveConfig({ dataDir: dir }, { CAPSULE_POOL: '{"sise": 1}' }), /pool\.sise is not a setting/);
    assert.throws(() => resolveConfig({ dataDir: dir }, { CAPSULE_QUOTAS: '{"vms": 0}' }), /quotas\.vms must be a positive number or null/);
    await fs.rm(path.join(dir, "capsule.json"));
  });
});

/** An engine with VMs in memory: listVms answers after a turn of the event loop, like the real one. */
class EngineStandIn {
  readonly options = { limits: DEFAULT_LIMITS };
  vms: VmInfo[] = [];
  snaps: SnapshotRecord[] = [];
  async listVms(): Promise<VmInfo[]> {
    await new Promise((r) => setImmediate(r));
    return [...this.vms];
  }
  async getVm(id: string): Promise<VmInfo> {
    const v = this.vms.find((x) => x.id === id);
    if (!v) throw new Error("no such VM");
    return v;
  }
  async listSnapshots(): Promise<SnapshotRecord[]> {
    await new Promise((r) => setImmediate(r));
    return [...this.snaps];
  }
}

function vmInfo(id: string, state: VmInfo["state"], memoryMb = 2048, cpus = 1): VmInfo {
  return { id, state, runtime: "runsc", image: "trixie", limits: { ...DEFAULT_LIMITS, memoryMb, cpus }, egress: "none", createdAt: new Date().toISOString() };
}

describe("Quotas: live counting", () => {
  let dir: string;
  let db: Db;
  let alice: Account;
  let bob: Account;
  before(async () => {
    dir = await scratchDir();
    db = openDb(path.join(dir, "server.db"));
    const keys = new KeyStore(db);
    keys.createKey("alice");
    keys.createKey("bob");
    alice = { id: (db.prepare("SELECT id FROM accounts WHERE name = 'alice'").get() as { id: string }).id, name: "alice" };
    bob = { id: (db.prepare("SELECT id FROM accounts WHERE name = 'bob'").get() as { id: string }).id, name: "bob" };
  });
  after(async () => {
    db.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  function setup(quotas: Partial<typeof DEFAULT_QUOTAS>, admission: Partial<AdmissionConfig> = {}): { q: Quotas; engine: EngineStandIn; rows: Rows } {
    db.exec("DELETE FROM vms; DELETE FROM snapshots;");
    const engine = new EngineStandIn();
    const rows = new Rows(db);
    return { q: new Quotas(engine as unknown as Engine, rows, { quotas: { ...DEFAULT_QUOTAS, ...quotas }, admission: { ...ADM, ...admission } }), engine, rows };
  }

  it("two concurrent admissions at a limit of 1: exactly one passes; release frees the slot (idempotent)", async () => {
    const { q } = setup({ vms: 1 });
    const results = await Promise.allSettled([q.admitVms(alice, DEFAULT_LIMITS, 1, true), q.admitVms(alice, DEFAULT_LIMITS, 1, true)]);
    const ok = results.filter((r) => r.status === "fulfilled");
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    assert.equal(ok.length, 1);
    assert.equal((refused[0]?.reason as ApiError).code, "VM_LIMIT_EXCEEDED");
    const ticket = (ok[0] as PromiseFulfilledResult<{ release(): void }>).value;
    ticket.release();
    ticket.release();
    assert.equal(q.inFlight(alice).reservations, 0);
    (await q.admitVms(alice, DEFAULT_LIMITS, 1, true)).release();
  });

  it("host capacity counts every engine VM (any account's, and ones no row owns) plus reservations", async () => {
    // memory cap 12288 MiB: an orphan engine VM of 9000 MiB leaves room for one 2 GiB VM, not two
    const { q, engine } = setup({}, { cpuOvercommit: 100 });
    engine.vms.push(vmInfo("orphan", "running", 9000), vmInfo("stopped-one", "stopped", 8192));
    const first = await q.admitVms(bob, DEFAULT_LIMITS, 1, true);
    await assert.rejects(q.admitVms(alice, DEFAULT_LIMITS, 1, true), (e: ApiError) => e.code === "SERVICE_UNAVAILABLE" && e.extra.reason === "HOST_MEMORY");
    first.release();
    (await q.admitVms(alice, DEFAULT_LIMITS, 1, true)).release();
  });

  it("running VMs per account: only the account's VMs the engine runs count; a boot of a running VM reserves nothing", async () => {
    const { q, engine, rows } = setup({ runningVms: 1 });
    const now = new Date().toISOString();
    rows.insertVm({ id: "a1", account_id: alice.id, name: null, idle_timeout_seconds: null, activity_threshold_bytes: 0, created_at: now });
    rows.insertVm({ id: "a2", account_id: alice.id, name: null, idle_timeout_seconds: null, activity_threshold_bytes: 0, created_at: now });
    engine.vms.push(vmInfo("a1", "running"), vmInfo("a2", "stopped"), vmInfo("b1", "running"));
    (await q.admitBoot(alice, "a1")).release(); // already running
    await assert.rejects(q.admitBoot(alice, "a2"), (e: ApiError) => e.code === "VM_LIMIT_EXCEEDED" && e.extra.reason === "ACCOUNT_RUNNING_VMS");
    (await q.admitVms(bob, DEFAULT_LIMITS, 1, true)).release();
  });

  it("fork of n counts n", async () => {
    const { q } = setup({ vms: 3 });
    await assert.rejects(q.admitVms(alice, DEFAULT_LIMITS, 4, true), /asked for 4 more/);
    (await q.admitVms(alice, DEFAULT_LIMITS, 3, true)).release();
  });

  it("snapshots: count and the bytes of the account's own snapshots", async () => {
    const { q, engine, rows } = setup({ snapshots: 2, snapshotBytes: 1000 });
    const now = new Date().toISOString();
    rows.insertSnapshot({ id: "s1", account_id: alice.id, name: null, source_vm_id: null, created_at: now });
    engine.snaps.push({ id: "s1", sizeBytes: 600 } as SnapshotRecord, { id: "sb", sizeBytes: 5000 } as SnapshotRecord);
    const t1 = await q.admitSnapshot(alice); // bob's 5000 bytes are not alice's
    await assert.rejects(q.admitSnapshot(alice), (e: ApiError) => e.code === "SNAPSHOT_LIMIT_EXCEEDED" && e.extra.reason === "ACCOUNT_SNAPSHOTS");
    t1.release();
    (engine.snaps[0] as { sizeBytes: number }).sizeBytes = 1000;
    await assert.rejects(q.admitSnapshot(alice), (e: ApiError) => e.extra.reason === "ACCOUNT_SNAPSHOT_BYTES");
  });

  it("concurrent execs and PTYs per account: capped, released idempotently, other accounts unaffected", () => {
    const { q } = setup({ concurrentExecs: 2, ptys: 1 });
    const a = q.acquireExec(alice);
    const b = q.acquireExec(alice);
    assert.throws(() => q.acquireExec(alice), (e: ApiError) => e.status === 429 && e.extra.reason === "EXEC_CONCURRENCY");
    q.acquireExec(bob).release();
    a.release();
    a.release();
    assert.equal(q.inFlight(alice).execs, 1);
    q.acquireExec(alice).release();
    b.release();
    const p = q.acquirePty(alice);
    assert.throws(() => q.acquirePty(alice), (e: ApiError) => e.code === "SESSION_CAP_REACHED");
    p.release();
    q.acquirePty(alice).release();
    assert.deepEqual(q.inFlight(alice), { execs: 0, ptys: 0, reservations: 0 });
  });
});

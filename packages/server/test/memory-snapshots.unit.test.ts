/**
 * Memory snapshots in the server, without sandboxes: what provisioning asks the engine for, the
 * warm pool kept out of creates from a memory snapshot, the engine's UNSUPPORTED as a client-known
 * code with a reason, and nothing left (row, intent, quota reservation) of a refused one.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import pino from "pino";
import { DEFAULT_LIMITS, EngineError, ErrorCode, type Engine, type SnapshotRecord, type VmInfo } from "@capsule/engine";
import { ActivityTracker } from "../src/activity.js";
import { openDb, type Db } from "../src/db.js";
import { ApiError, MEMORY_UNSUPPORTED, toApiError } from "../src/errors.js";
import { KeyStore, type Account } from "../src/keys.js";
import { DEFAULT_QUOTAS, Quotas } from "../src/quotas.js";
import type { PoolKind, WarmPool } from "../src/vms/pool.js";
import { Provisioning } from "../src/vms/provisioning.js";
import { Rows, type VmRow } from "../src/vms/rows.js";
import { scratchDir } from "../test-support/harness.js";

/** The agreed fields of a memory snapshot's record (the engine keeps more; the server reads only these). */
const MEMORY = { bytes: 4096, network: "netstack", agentBundle: "v1", createdFromState: "running" } as NonNullable<SnapshotRecord["memory"]>;

function snapshot(id: string, memory?: SnapshotRecord["memory"]): SnapshotRecord {
  return { id, image: "trixie", layers: [], sourceVmId: "src", sizeBytes: 100 + (memory?.bytes ?? 0), createdAt: new Date().toISOString(), ...(memory ? { memory } : {}) };
}

function vmInfo(id: string): VmInfo {
  return { id, state: "running", runtime: "runsc", image: "trixie", limits: DEFAULT_LIMITS, egress: "none", createdAt: new Date().toISOString() };
}

/** The engine calls provisioning makes, answered from memory; `refuse` makes the next memory call throw UNSUPPORTED. */
class EngineStandIn {
  readonly options = { limits: DEFAULT_LIMITS };
  readonly snaps: SnapshotRecord[] = [];
  readonly vms: VmInfo[] = [];
  readonly calls: Array<[string, unknown]> = [];
  refuse = false;
  async listVms(): Promise<VmInfo[]> {
    return [...this.vms];
  }
  async getVm(id: string): Promise<VmInfo> {
    return this.vms.find((v) => v.id === id) ?? vmInfo(id);
  }
  async listSnapshots(): Promise<SnapshotRecord[]> {
    return [...this.snaps];
  }
  async getSnapshot(id: string): Promise<SnapshotRecord> {
    const s = this.snaps.find((x) => x.id === id);
    if (!s) throw new EngineError(ErrorCode.SnapshotNotFound, `no snapshot ${id}`);
    return s;
  }
  async createVm(opts: { snapshotId?: string; memory?: boolean }): Promise<VmInfo> {
    this.calls.push(["createVm", opts]);
    if (this.refuse && opts.memory !== false) throw new EngineError(ErrorCode.Unsupported, "this engine cannot restore that memory image");
    const vm = vmInfo(`vm${this.vms.length}`);
    this.vms.push(vm);
    return vm;
  }
  async snapshotVm(id: string, opts: { memory?: boolean | "auto" }): Promise<SnapshotRecord> {
    this.calls.push(["snapshotVm", opts]);
    if (this.refuse && opts.memory === true) throw new EngineError(ErrorCode.Unsupported, "a runc VM cannot be checkpointed");
    const s = snapshot(`snap-${this.snaps.length}`, opts.memory ? MEMORY : undefined);
    this.snaps.push(s);
    return s;
  }
  async forkVm(id: string, opts: { count?: number; memory?: boolean | "auto" }): Promise<VmInfo[]> {
    this.calls.push(["forkVm", opts]);
    if (this.refuse && opts.memory === true) throw new EngineError(ErrorCode.Unsupported, "a runc VM cannot be checkpointed");
    return Array.from({ length: opts.count ?? 1 }, (_, i) => vmInfo(`fork${i}`));
  }
}

/** A pool that has nothing warm and counts the creates that asked it. */
class PoolStandIn {
  readonly takes: PoolKind[] = [];
  async take(kind: PoolKind): Promise<VmInfo | undefined> {
    this.takes.push(kind);
    return undefined;
  }
  async yieldFor(): Promise<boolean> {
    return false;
  }
}

describe("memory snapshots: provisioning", () => {
  let dir: string;
  let db: Db;
  let alice: Account;
  before(async () => {
    dir = await scratchDir();
    db = openDb(path.join(dir, "server.db"));
    new KeyStore(db).createKey("alice");
    alice = { id: (db.prepare("SELECT id FROM accounts WHERE name = 'alice'").get() as { id: string }).id, name: "alice" };
  });
  after(async () => {
    db.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  function setup(): { p: Provisioning; engine: EngineStandIn; pool: PoolStandIn; rows: Rows; quotas: Quotas } {
    db.exec("DELETE FROM vms; DELETE FROM snapshots;");
    const engine = new EngineStandIn();
    const pool = new PoolStandIn();
    const rows = new Rows(db);
    const quotas = new Quotas(engine as unknown as Engine, rows, { quotas: DEFAULT_QUOTAS, admission: { memoryMb: 65_536, vcpus: 64, diskMb: 1 << 20, memoryOvercommit: 100, cpuOvercommit: 100, hostMemoryMb: 65_536, hostCpus: 64 } });
    const p = new Provisioning(engine as unknown as Engine, rows, new ActivityTracker(), pino({ level: "silent" }), { defaultIdleTimeoutSeconds: null, egress: "none" }, quotas, pool as unknown as WarmPool);
    return { p, engine, pool, rows, quotas };
  }

  function ownSnapshot(rows: Rows, engine: EngineStandIn, id: string, memory?: SnapshotRecord["memory"]): void {
    engine.snaps.push(snapshot(id, memory));
    rows.insertSnapshot({ id, account_id: alice.id, name: null, source_vm_id: null, created_at: new Date().toISOString() });
  }

  /** Nothing of a refused request is left: no intent to reconcile, no reservation held. */
  function assertNothingLeft(rows: Rows, quotas: Quotas): void {
    assert.equal(rows.intentTokens().size, 0, "the create intent is settled");
    assert.equal(quotas.inFlight(alice).reservations, 0, "the quota reservation is released");
  }

  it("a create from a memory snapshot never asks the warm pool; one from a disk snapshot or the base image does", async () => {
    const { p, engine, pool, rows } = setup();
    ownSnapshot(rows, engine, "snap-mem", MEMORY);
    ownSnapshot(rows, engine, "snap-disk");
    await p.create(alice, { snapshotId: "snap-mem" });
    await p.create(alice, { snapshotId: "snap-mem", memory: false });
    assert.equal(pool.takes.length, 0, "no warm VM for a memory snapshot, restored or not");
    await p.create(alice, { snapshotId: "snap-disk" });
    await p.create(alice, {});
    assert.deepEqual(pool.takes.map((k) => k.snapshotId ?? "base"), ["snap-disk", "base"]);
    const creates = engine.calls.filter(([op]) => op === "createVm").map(([, o]) => (o as { memory?: boolean }).memory);
    assert.deepEqual(creates, [undefined, false, undefined, undefined], "memory: false is passed on, absent stays absent");
  });

  it("a create from a memory snapshot the engine cannot restore: 400 CREATE_VM_BAD_REQUEST with reason MEMORY_UNSUPPORTED, no VM row, nothing left", async () => {
    const { p, engine, rows, quotas } = setup();
    ownSnapshot(rows, engine, "snap-mem", MEMORY);
    engine.refuse = true;
    await assert.rejects(p.create(alice, { snapshotId: "snap-mem" }), (e: ApiError) => e.code === "CREATE_VM_BAD_REQUEST" && e.status === 400 && e.extra.reason === MEMORY_UNSUPPORTED);
    assert.equal(rows.vmsOf(alice).length, 0);
    assertNothingLeft(rows, quotas);
    await p.create(alice, { snapshotId: "snap-mem", memory: false }); // its disk still boots
    assert.equal(rows.vmsOf(alice).length, 1);
  });

  it("snapshot and fork pass memory to the engine; a refused memory snapshot or fork leaves no row, intent or reservation", async () => {
    const { p, engine, rows, quotas } = setup();
    const source = { id: "src", name: null, idle_timeout_seconds: null, activity_threshold_bytes: 0 } as VmRow;
    const snap = await p.snapshot(alice, source, null, true);
    assert.deepEqual(snap.memory, MEMORY);
    await p.fork(alice, source, 2, "auto");
    assert.deepEqual(
      engine.calls.map(([op, o]) => [op, (o as { memory?: unknown }).memory]),
      [["snapshotVm", true], ["forkVm", "auto"]],
    );
    engine.refuse = true;
    const snapsBefore = rows.snapshotsOf(alice).length;
    const vmsBefore = rows.vmsOf(alice).length;
    await assert.rejects(p.snapshot(alice, source, null, true), (e: ApiError) => e.code === "BAD_REQUEST" && e.status === 400 && e.extra.reason === MEMORY_UNSUPPORTED);
    await assert.rejects(p.fork(alice, source, 3, true), (e: ApiError) => e.code === "BAD_REQUEST" && e.extra.reason === MEMORY_UNSUPPORTED);
    assert.equal(rows.snapshotsOf(alice).length, snapsBefore);
    assert.equal(rows.vmsOf(alice).length, vmsBefore);
    assertNothingLeft(rows, quotas);
  });
});

describe("memory snapshots: error mapping", () => {
  it("the engine's UNSUPPORTED is the route's own client-known 400 code with reason MEMORY_UNSUPPORTED, never a new code", () => {
    const err = new EngineError(ErrorCode.Unsupported, "runc VMs cannot be checkpointed");
    const snap = toApiError(err);
    assert.deepEqual([snap.code, snap.status, snap.extra.reason, snap.message], ["BAD_REQUEST", 400, MEMORY_UNSUPPORTED, "runc VMs cannot be checkpointed"]);
    const create = toApiError(err, "CREATE_VM_BAD_REQUEST");
    assert.deepEqual([create.code, create.status, create.extra.reason], ["CREATE_VM_BAD_REQUEST", 400, MEMORY_UNSUPPORTED]);
    // A stopped VM is a state the caller can fix by starting it.
    assert.equal(toApiError(new EngineError(ErrorCode.InvalidState, "VM is stopped")).code, "VM_NOT_RUNNING");
  });
});

import fs from "node:fs/promises";
import { resolveOptions, validateLimits, type EngineOptions, type Egress, type ResolvedOptions, type RuntimeName, type VmLimits } from "./config.js";
import { AGENT_FEATURES } from "@capsule/agent-protocol";
import { ImageStore, LayerStore } from "./disk/layer-store.js";
import { diskUsageBytes } from "./disk/layers.js";
import { mountDisk, unmountDisk } from "./disk/writable.js";
import { EngineError, ErrorCode } from "./errors.js";
import { GuestOps } from "./guest-ops.js";
import { newId } from "./ids.js";
import { assertTransition, requireState, type VmState } from "./lifecycle.js";
import { checkpointVm, maxImageBytes, type CheckpointTimings } from "./memory/checkpoint.js";
import { KeyedMutex } from "./mutex.js";
import { PhaseTimer } from "./phase-timer.js";
import { validatePolicy, type FirewallPolicy } from "./net/policy.js";
import { hostIfName, Paths } from "./paths.js";
import { checkHost, type EngineFeatures } from "./preflight.js";
import { recover, type RecoveryReport } from "./recovery.js";
import { RuncRuntime } from "./runtime/runc.js";
import { RunscRuntime } from "./runtime/runsc.js";
import type { RestoreGate, Runtime } from "./runtime/types.js";
import { DataDirLock } from "./state/data-dir-lock.js";
import { secureDataDir } from "./state/host-modes.js";
import { Records, type MemorySnapshot, type SnapshotRecord, type VmRecord } from "./state/records.js";
import { pathExists } from "./state/store.js";
import { VmHost, type StartHow } from "./vm-host.js";

export type { MemorySnapshot, SnapshotRecord } from "./state/records.js";

/** `memory` of a snapshot or fork: true captures memory or throws, "auto" falls back to the disk where the VM cannot be checkpointed. */
export type MemoryMode = boolean | "auto";

/**
 * Restores of one memory fork in flight at once. A restore waits on runsc's processes and the
 * image's reads as much as it computes, so on this 2-core host 3 at once beat 2: 3 copies to
 * their first exec took 1146 ms one at a time, 1092 two at a time, 738 three at once (medians of
 * 3); 6 copies 1557, 1353, 1402 and 1580 ms at 2, 3, 4 and 6 at once. More only queue.
 */
export const FORK_RESTORE_CONCURRENCY = 3;

/**
 * The owner label of the restore target the engine keeps made ahead (see `#prepareRestore`): such
 * a record is never listed and goes to nobody but a create from its memory snapshot.
 */
const PREPARED_OWNER = "engine:prepared-restore";
/**
 * A target is made this long after the last memory snapshot taken or created from returned (each
 * starts the wait again), so that making it (about 150 ms of a core) does not compete with the
 * first commands of the VM just created, or with the source resuming.
 */
const PREPARE_AFTER_MS = 200;
/**
 * How long a memory capture waits for the source's agent to listen again before it returns
 * anyway (it takes a few ms; see `#captureMemory`).
 */
const AGENT_RELISTEN_WAIT_MS = 2_000;

export interface CreateVmOpts {
  /** Boot from this snapshot's disk; a memory snapshot's processes are restored (see `memory`). */
  snapshotId?: string;
  /**
   * For a memory snapshot: absent or true restores its processes where they were (UNSUPPORTED
   * where this engine cannot restore it); false boots its disk only. Ignored for a disk snapshot.
   */
  memory?: boolean;
  /** Base image when no snapshot is given. Default: the engine's `defaultImage`. */
  image?: string;
  name?: string;
  runtime?: RuntimeName;
  limits?: Partial<VmLimits>;
  egress?: Egress;
  /**
   * The VM's own firewall instead of `egress` and the engine's `allowedHostPorts`: nothing is
   * reachable but what its rules allow (see net/policy.ts for what a rule can and cannot open).
   */
  firewall?: FirewallPolicy;
  /**
   * Who this VM is for, written into its record before the VM exists: an opaque label of the
   * caller's (the API server's account and create intent, a pool, a build). Recovery keeps it; the
   * caller's reconcile uses it to tell its own garbage from VMs it cannot explain.
   */
  owner?: string;
}

export interface VmInfo {
  id: string;
  name?: string;
  state: VmState;
  runtime: RuntimeName;
  image: string;
  snapshotId?: string;
  limits: VmLimits;
  egress: Egress;
  /** The VM's own firewall, when it has one (then `egress` does not apply). */
  firewall?: FirewallPolicy;
  /** The VM's address on its veth, while it runs. */
  ip?: string;
  /** The host's end of the veth: where the allowed host ports are reached. */
  gatewayIp?: string;
  /** Why the VM is `lost`: what its guest did wrong when recovery probed it. */
  lostReason?: string;
  /** The owner label it was created with (see {@link CreateVmOpts.owner}). */
  owner?: string;
  /** The memory snapshot id (or, for a memory fork, the source VM id) its processes were restored from. */
  restoredFrom?: string;
  createdAt: string;
}

/**
 * The sandbox engine: VMs (gVisor or runc sandboxes on layered disks), snapshots and forks.
 * One Engine owns one data dir at a time (a lock file enforces it). All state lives on disk, so
 * a new Engine on the same data dir adopts running VMs and cleans up what a crash left.
 *
 * @example
 * const engine = await Engine.open({ dataDir: "/var/lib/capsule" });
 * const vm = await engine.createVm();
 * const r = await engine.guest.exec(vm.id, { command: "echo hi" });
 */
export class Engine {
  readonly options: ResolvedOptions;
  /** What start-up found this host's sandboxes can do (the network stack, checkpoints). */
  readonly features: EngineFeatures;
  readonly guest: GuestOps;
  readonly #paths: Paths;
  readonly #records: Records;
  readonly #layers: LayerStore;
  readonly #images: ImageStore;
  readonly #host: VmHost;
  readonly #runtimes: Record<RuntimeName, Runtime>;
  readonly #lock = new KeyedMutex();
  /** How long each phase of the last boot of a VM took (diagnostics; not persisted). */
  readonly #bootPhases = new Map<string, Record<string, number>>();
  /** How long each phase of the last snapshot (or fork) capture of a VM took (diagnostics). */
  readonly #capturePhases = new Map<string, Record<string, number>>();
  /** VMs whose teardown runs in the background after delete returned. */
  readonly #deleting = new Map<string, Promise<void>>();
  /** Deletes still marking their record `deleting` (before their teardown is in #deleting). */
  readonly #marking = new Set<Promise<unknown>>();
  #dataDirLock: DataDirLock | undefined;
  #recovery: RecoveryReport | undefined;
  #closed = false;
  /**
   * At most one restore target made ahead, for the memory snapshot restored last: its disk,
   * overlay, netns, firewall, spec and `runsc create` done, waiting for the restore (see
   * `#prepareRestore`).
   */
  #prepared: PreparedRestore | undefined;
  #prepareTimer: NodeJS.Timeout | undefined;
  /** Creates from a memory snapshot restoring now: no target is made meanwhile (`#schedulePrepare`). */
  #restoring = 0;
  /** The `#prepareRestore` in flight, if any (close and deleteSnapshot wait for it). */
  #preparing: Promise<void> | undefined;
  /** Set when close begins: no target is made any more. */
  #closing = false;

  private constructor(options: ResolvedOptions, features: EngineFeatures) {
    this.options = options;
    this.features = Object.freeze({ ...features });
    this.#paths = new Paths(options.dataDir);
    this.#records = new Records(this.#paths);
    this.#layers = new LayerStore(this.#paths, this.#records);
    this.#images = new ImageStore(this.#paths, this.#records);
    this.#runtimes = {
      runsc: new RunscRuntime(options.runscPath, `${this.#paths.runtimeRoot}/runsc`, options.runscPlatform, features.network),
      runc: new RuncRuntime(options.runcPath, `${this.#paths.runtimeRoot}/runc`),
    };
    this.#host = new VmHost(options, this.#paths, this.#runtimes, this.#records);
    this.guest = new GuestOps((id) => this.#agentFor(id));
  }

  /**
   * Opens (and recovers) the engine on its data dir. Fails with HOST_NOT_READY saying what is
   * missing, or ENGINE_LOCKED if another live process has the data dir. No VM can make this fail
   * or hang: each VM gets `RECOVERY_PROBE_BUDGET_MS` to answer (see {@link recovery}).
   */
  static async open(opts: EngineOptions = {}): Promise<Engine> {
    const options = resolveOptions(opts);
    const engine = new Engine(options, await checkHost(options));
    await fs.mkdir(options.dataDir, { recursive: true, mode: 0o700 });
    engine.#dataDirLock = await DataDirLock.acquire(engine.#paths.lockFile);
    try {
      await secureDataDir(engine.#paths);
      engine.#recovery = await recover({
        options,
        paths: engine.#paths,
        records: engine.#records,
        host: engine.#host,
        runtimes: engine.#runtimes,
        layers: engine.#layers,
        images: engine.#images,
      });
    } catch (err) {
      await engine.close();
      throw err;
    }
    return engine;
  }

  /** What recovery found and did when this engine opened: adopted, stopped, lost and removed VMs. */
  get recovery(): RecoveryReport {
    if (!this.#recovery) throw new EngineError(ErrorCode.InvalidState, "engine is not open");
    return this.#recovery;
  }

  /** Resolves once every VM teardown still running in the background (after `deleteVm`) is done. */
  async settled(): Promise<void> {
    // A delete called just before is still marking its record: waited for too, then its teardown.
    while (this.#marking.size > 0 || this.#deleting.size > 0) await Promise.allSettled([...this.#marking, ...this.#deleting.values()]);
  }

  /** Releases the data dir. Running VMs keep running; the next `open` adopts them. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closing = true;
    clearTimeout(this.#prepareTimer);
    await this.#preparing;
    await this.#dropPrepared();
    await this.settled();
    this.#closed = true;
    await this.#dataDirLock?.release();
  }

  // ---------------------------------------------------------------- VMs

  async createVm(opts: CreateVmOpts = {}): Promise<VmInfo> {
    this.#assertOpen();
    let image = opts.image ?? this.options.defaultImage;
    let layers: string[] = [];
    if (opts.snapshotId !== undefined) {
      const snap = await this.#records.snapshot(opts.snapshotId);
      image = snap.image;
      layers = snap.layers;
      if (snap.memory && opts.memory !== false) return this.#restoreSnapshot(snap, snap.memory, opts);
    }
    return this.#createFromLayers({ ...opts, image, layers });
  }

  /** A new VM whose processes are those of the memory snapshot, restored on its disk. */
  async #restoreSnapshot(snap: SnapshotRecord, memory: MemorySnapshot, opts: CreateVmOpts): Promise<VmInfo> {
    if (opts.runtime !== undefined && opts.runtime !== "runsc") throw new EngineError(ErrorCode.Unsupported, `snapshot ${snap.id} holds a runsc VM's memory; it restores on runsc only (or create with memory: false)`);
    if (!this.#runtimes.runsc.canCheckpoint) throw new EngineError(ErrorCode.Unsupported, `snapshot ${snap.id} holds memory, and this engine runs runsc on ${this.features.network}, where it cannot restore it (create with memory: false)`);
    if (!(await pathExists(`${memory.agentBundle}/agent/main.js`))) throw new EngineError(ErrorCode.Unsupported, `snapshot ${snap.id}'s memory needs the agent bundle ${memory.agentBundle}, which is gone from this host (create with memory: false)`);
    const limits = validateLimits({ ...memory.limits, ...opts.limits });
    if (limits.memoryMb < memory.limits.memoryMb) throw new EngineError(ErrorCode.InvalidArgument, `snapshot ${snap.id} holds a VM of ${memory.limits.memoryMb} MiB; its copy cannot have less`);
    // No target is made while a create from a memory snapshot restores: the wait starts again
    // once the last one is done.
    clearTimeout(this.#prepareTimer);
    this.#prepareTimer = undefined;
    this.#restoring++;
    try {
      const prepared = await this.#takePrepared(snap.id, limits, opts);
      if (prepared) return prepared;
      this.#images.hold(memory.image);
      try {
        if (!(await pathExists(this.#images.path(memory.image)))) throw new EngineError(ErrorCode.Internal, `snapshot ${snap.id}'s memory image is missing from the data dir`);
        return await this.#createFromLayers(
          { ...opts, runtime: "runsc", limits, image: snap.image, layers: snap.layers },
          { how: this.#restoreHow(memory), restoredFrom: snap.id },
        );
      } finally {
        this.#images.release(memory.image);
      }
    } finally {
      this.#restoring--;
      this.#schedulePrepare(snap.id);
    }
  }

  #restoreHow(memory: MemorySnapshot, gate?: RestoreGate): StartHow {
    return { kind: "restore", imageDir: this.#images.path(memory.image), agentBundle: memory.agentBundle, caches: memory.caches, ...(gate ? { gate } : {}) };
  }

  /**
   * The restore target made ahead for `snapshotId`, restored into for this create, when there is
   * one made with these limits; undefined otherwise, or when its restore failed (the caller
   * restores cold). The create's
   * owner, name, egress and firewall are the target's from now on (its network changes before the
   * restore where they differ); its id, address and hostname are those it was made with.
   */
  async #takePrepared(snapshotId: string, limits: VmLimits, opts: CreateVmOpts): Promise<VmInfo | undefined> {
    const t = this.#prepared;
    if (!t || t.snapshotId !== snapshotId || !sameLimits(t.rec.limits, limits)) return undefined;
    this.#prepared = undefined;
    // One whose making failed has torn itself down: the create restores cold.
    if (!(await t.made.then(() => true, () => false))) return undefined;
    const rec = t.rec;
    try {
      const egress = opts.egress ?? this.options.egress;
      const firewall = opts.firewall !== undefined ? await this.#checkPolicy(rec.id, opts.firewall) : undefined;
      const networkChanges = firewall !== undefined || egress !== rec.egress;
      rec.egress = egress;
      if (firewall !== undefined) rec.firewall = firewall;
      if (opts.name !== undefined) rec.name = opts.name;
      if (opts.owner !== undefined) rec.owner = checkOwner(opts.owner);
      else delete rec.owner;
      rec.createdAt = new Date().toISOString();
      // Not written here: the record on disk stays the engine's `creating` one until the restore
      // is done and it becomes `running` with all of the above (`#bringUpNew`). A crash before
      // that leaves a `creating` record, which recovery removes whoever's it was, so a write now
      // would only sit in the create's way.
      if (networkChanges) await this.#host.changeFirewall(rec);
    } catch (err) {
      t.go.reject(err);
      await t.up.catch(() => undefined);
      throw err;
    }
    t.go.resolve();
    // A target that fails its restore (its sandbox died while it waited, say) has torn itself
    // down: the create restores cold, which reports the error if it is the snapshot's.
    return t.up.catch(() => undefined);
  }

  /** Makes a restore target for `snapshotId` soon (see {@link PREPARE_AFTER_MS}), dropping any other. */
  #schedulePrepare(snapshotId: string): void {
    if (this.#closing) return;
    clearTimeout(this.#prepareTimer);
    this.#prepareTimer = setTimeout(() => {
      this.#prepareTimer = undefined;
      if (this.#restoring > 0) return; // the last of them schedules again when it is done
      const p = this.#prepareRestore(snapshotId).catch(() => undefined); // the next create restores cold
      this.#preparing = p;
      void p.finally(() => {
        if (this.#preparing === p) this.#preparing = undefined;
      });
    }, PREPARE_AFTER_MS);
    this.#prepareTimer.unref();
  }

  /**
   * Makes the one restore target for the memory snapshot: a `creating` record owned by
   * {@link PREPARED_OWNER}, its disk, overlay on the snapshot's layers, netns, address, firewall
   * (the engine's egress), guest files, spec and `runsc create`, with the snapshot's limits; then
   * it waits for a create of that snapshot (`#takePrepared`) or its drop. It holds the memory image
   * meanwhile. A crash leaves a `creating` record, which recovery removes. Every VM it becomes
   * is fresh: nothing ran in the sandbox before its restore, and its id, hostname, address and
   * disk are its own.
   */
  async #prepareRestore(snapshotId: string): Promise<void> {
    if (this.#closing || this.#prepared?.snapshotId === snapshotId) return;
    await this.#dropPrepared();
    // Under the snapshot's lock, as its delete: a delete either finds this target or comes first.
    await this.#lock.run(snapshotId, async () => {
      const snap = await this.#records.snapshot(snapshotId).catch(() => undefined);
      const memory = snap?.memory;
      if (!snap || !memory || !this.#runtimes.runsc.canCheckpoint || !(await pathExists(`${memory.agentBundle}/agent/main.js`))) return;
      if (!(await pathExists(this.#images.path(memory.image))) || this.#closing || this.#prepared) return;
      const rec = this.#newRecord({ runtime: "runsc", image: snap.image, layers: snap.layers, limits: validateLimits({ ...memory.limits }), egress: this.options.egress, snapshotId, owner: PREPARED_OWNER, restoredFrom: snapshotId });
      const made = settleable();
      const go = settleable();
      this.#images.hold(memory.image);
      const how = this.#restoreHow(memory, () => {
        t.isMade = true;
        made.resolve();
        return go.promise;
      });
      const up = this.#bringUpNew(rec, how).finally(() => this.#images.release(memory.image));
      const t: PreparedRestore = { snapshotId, rec, made: made.promise, isMade: false, go, up };
      this.#prepared = t;
      up.catch((err: unknown) => {
        made.reject(err);
        if (this.#prepared === t) this.#prepared = undefined;
      });
    });
  }

  /** The restore target made ahead, if any: its snapshot, its VM id (the next create's) and whether runsc made it yet. For tests and metrics. */
  preparedRestore(): { snapshotId: string; vmId: string; made: boolean } | undefined {
    const t = this.#prepared;
    return t && { snapshotId: t.snapshotId, vmId: t.rec.id, made: t.isMade };
  }

  /** Tears the restore target made ahead down, if there is one; resolves once it is gone. */
  async #dropPrepared(snapshotId?: string): Promise<void> {
    const t = this.#prepared;
    if (!t || (snapshotId !== undefined && t.snapshotId !== snapshotId)) return;
    this.#prepared = undefined;
    t.go.reject(new EngineError(ErrorCode.InvalidState, `the restore target made ahead for snapshot ${t.snapshotId} was dropped`));
    await t.up.catch(() => undefined);
  }

  async #createFromLayers(opts: CreateVmOpts & { image: string; layers: string[] }, restore?: { how: StartHow; restoredFrom: string }): Promise<VmInfo> {
    await this.#assertImage(opts.image);
    const runtime = opts.runtime ?? this.options.runtime;
    if (runtime !== "runsc" && runtime !== "runc") throw new EngineError(ErrorCode.InvalidArgument, `unknown runtime ${String(runtime)}; use runsc or runc`);
    const limits = validateLimits({ ...this.options.limits, ...opts.limits });
    const id = newId();
    const firewall = opts.firewall !== undefined ? await this.#checkPolicy(id, opts.firewall) : undefined;
    const rec = this.#newRecord(
      {
        runtime,
        image: opts.image,
        layers: opts.layers,
        limits,
        egress: opts.egress ?? this.options.egress,
        ...(firewall !== undefined ? { firewall } : {}),
        ...(opts.name !== undefined ? { name: opts.name } : {}),
        ...(opts.snapshotId !== undefined ? { snapshotId: opts.snapshotId } : {}),
        ...(opts.owner !== undefined ? { owner: checkOwner(opts.owner) } : {}),
        ...(restore ? { restoredFrom: restore.restoredFrom } : {}),
      },
      id,
    );
    return this.#bringUpNew(rec, restore?.how);
  }

  /** A `creating` record of a new VM (not yet written). */
  #newRecord(fields: Omit<VmRecord, "id" | "state" | "createdAt" | "updatedAt">, id: string = newId()): VmRecord {
    const now = new Date().toISOString();
    return { id, state: "creating", createdAt: now, updatedAt: now, ...fields };
  }

  /** Writes the new VM's record, then makes its disk and brings it up; on failure, removes everything again. */
  #bringUpNew(rec: VmRecord, how?: StartHow): Promise<VmInfo> {
    return this.#lock.run(rec.id, async () => {
      // The record goes to disk before any resource exists, so a crash at any later point is
      // found by recovery, which tears down by the names derived from the id.
      await this.#records.saveVm(rec);
      try {
        const t0 = performance.now();
        await this.#host.createDisk(rec);
        const diskMs = performance.now() - t0;
        this.#bootPhases.set(rec.id, { disk: diskMs, ...(await this.#host.bringUp(rec, how)) });
      } catch (err) {
        await this.#host.tearDown(rec).catch(() => undefined);
        await this.#host.removeFiles(rec.id);
        throw err;
      }
      await this.#setState(rec, "running");
      return this.#info(rec);
    });
  }

  /**
   * Hands a running VM from one owner to another: its owner label (and name) change, durably,
   * only if it still has owner `from` and runs. A warm pool's VM becomes a tenant's this way, so a
   * crash leaves it either the pool's or the tenant's create intent's, never both or neither.
   * With `firewall`, the VM's network changes to that policy before the claim returns (the
   * record first, so recovery re-applies it if a crash comes in between).
   */
  async claimVm(id: string, opts: { from: string; owner: string; name?: string; firewall?: FirewallPolicy }): Promise<VmInfo> {
    this.#assertOpen();
    checkOwner(opts.owner);
    const firewall = opts.firewall !== undefined ? await this.#checkPolicy(id, opts.firewall) : undefined;
    return this.#lock.run(id, async () => {
      const rec = await this.#record(id);
      if (rec.owner !== opts.from || rec.state !== "running") {
        throw new EngineError(ErrorCode.InvalidState, `VM ${id} is not a running VM of ${opts.from}`);
      }
      rec.owner = opts.owner;
      if (opts.name !== undefined) rec.name = opts.name;
      if (firewall !== undefined) rec.firewall = firewall;
      await this.#records.saveVm(rec);
      if (firewall !== undefined) await this.#host.changeFirewall(rec);
      return this.#info(rec);
    });
  }

  /**
   * Holds a running VM still through its freezer cgroup (a kernel write, ~1 ms each way) until
   * `thawVm`: its threads take no CPU and its agent answers nothing meanwhile. Resolves false,
   * leaving the VM running, where the runtime has no freezer. A VM a crash leaves frozen runs
   * again after the next `open` (recovery thaws every VM before probing it).
   */
  async freezeVm(id: string): Promise<boolean> {
    this.#assertOpen();
    return this.#lock.run(id, async () => {
      const rec = await this.#record(id);
      requireState(id, rec.state, "freeze", ["running"]);
      return this.#runtimes[rec.runtime].freeze(id);
    });
  }

  /** Undoes `freezeVm`; a VM that is not frozen is left as it is. */
  async thawVm(id: string): Promise<void> {
    this.#assertOpen();
    await this.#lock.run(id, async () => {
      const rec = await this.#record(id);
      await this.#runtimes[rec.runtime].thaw(id);
    });
  }

  /**
   * Replaces the VM's firewall policy (a VM without one gets one; none is ever removed, so a VM
   * never falls back to the engine's egress switch). A running VM's ruleset changes in one
   * transaction; a stopped one's is applied when it starts.
   */
  async setVmFirewall(id: string, policy: FirewallPolicy): Promise<VmInfo> {
    this.#assertOpen();
    const firewall = await this.#checkPolicy(id, policy);
    return this.#lock.run(id, async () => {
      const rec = await this.#record(id);
      rec.firewall = firewall;
      await this.#records.saveVm(rec);
      if (rec.state === "running") await this.#host.changeFirewall(rec);
      return this.#info(rec);
    });
  }

  /** A validated copy of a policy for VM `id`; a `vm` rule must name a VM of this engine. */
  async #checkPolicy(id: string, policy: FirewallPolicy): Promise<FirewallPolicy> {
    const checked = validatePolicy(policy, { subnet: this.options.subnet, allowedHostPorts: this.options.allowedHostPorts, vmId: id });
    for (const r of checked.rules) {
      if (r.to === "vm" && !(await this.#records.readVm(r.vmId))) throw new EngineError(ErrorCode.InvalidArgument, `firewall rule names VM ${r.vmId}, which does not exist`);
    }
    return checked;
  }

  /**
   * Milliseconds each phase of the VM's last boot by this engine took (`disk`, `mounts`,
   * `network`, `spec`, `runtimeRun`, `agentReady`), for diagnostics; undefined if unknown.
   */
  bootPhases(id: string): Record<string, number> | undefined {
    return this.#bootPhases.get(id);
  }

  /**
   * Milliseconds each phase of the last snapshot or fork capture of the VM took: `pause` (or
   * `mount` for a stopped VM), `copy`, then `flush`, `rename` and `record` (a snapshot's) one after
   * the other while `resume` (or `unmount`) runs beside them; for diagnostics, undefined if unknown.
   */
  capturePhases(id: string): Record<string, number> | undefined {
    return this.#capturePhases.get(id);
  }

  /**
   * Raises a VM's vCPU and memory limits (a resize only grows; disk is not resized here). They are
   * written to its record and apply from its next start: a running sandbox keeps the cgroup
   * limits it was started with, since this runsc offers no live `update` of them.
   */
  async resizeVm(id: string, grow: Partial<Pick<VmLimits, "cpus" | "memoryMb">>): Promise<VmInfo> {
    this.#assertOpen();
    return this.#lock.run(id, async () => {
      const rec = await this.#record(id);
      const next = validateLimits({ ...rec.limits, ...grow });
      if (next.cpus < rec.limits.cpus || next.memoryMb < rec.limits.memoryMb) {
        throw new EngineError(ErrorCode.InvalidArgument, `a resize only grows: the VM has ${rec.limits.cpus} vCPUs and ${rec.limits.memoryMb} MiB`);
      }
      rec.limits = next;
      await this.#records.saveVm(rec);
      return this.#info(rec);
    });
  }

  async getVm(id: string): Promise<VmInfo> {
    return this.#info(await this.#record(id));
  }

  async listVms(): Promise<VmInfo[]> {
    const out: VmInfo[] = [];
    for (const id of await this.#records.vmIds()) {
      if (this.#deleting.has(id)) continue;
      const rec = await this.#records.readVm(id);
      if (rec && rec.state !== "deleting" && rec.state !== "deleted" && rec.owner !== PREPARED_OWNER) out.push(this.#info(rec));
    }
    return out;
  }

  /** Stops the VM's processes and releases its runtime resources; the disk is kept. A paused VM's memory is dropped. */
  async stopVm(id: string): Promise<VmInfo> {
    return this.#lock.run(id, async () => {
      const rec = await this.#record(id);
      if (rec.state === "stopped" || rec.state === "lost") return this.#info(rec); // a lost VM is already stopped
      requireState(id, rec.state, "stop", ["running", "paused"]);
      const paused = rec.state === "paused";
      await this.#setState(rec, "stopping");
      // A paused guest cannot answer; its completed writes are in the host's files already.
      if (!paused) await this.#host.agent(id).call({ op: "sync" }, "ok", 10_000).catch(() => undefined);
      await this.#host.tearDown(rec);
      await this.#setState(rec, "stopped");
      return this.#info(rec);
    });
  }

  /**
   * Freezes a running VM with its memory kept (the runtime's `pause`): its processes stop where
   * they are until {@link startVm} resumes them. It keeps its host resources. A paused VM stays so.
   */
  async pauseVm(id: string): Promise<VmInfo> {
    return this.#lock.run(id, async () => {
      const rec = await this.#record(id);
      if (rec.state === "paused") return this.#info(rec);
      requireState(id, rec.state, "pause", ["running"]);
      // The record follows the sandbox: a crash between the two leaves a `running` record on a
      // paused sandbox, which recovery resumes.
      await this.#runtimes[rec.runtime].pause(id);
      await this.#setState(rec, "paused");
      return this.#info(rec);
    });
  }

  /** Resumes a paused VM where it was; boots a stopped (or lost) VM again on the disk it had, with a fresh agent. */
  async startVm(id: string): Promise<VmInfo> {
    return this.#lock.run(id, async () => {
      const rec = await this.#record(id);
      if (rec.state === "running") return this.#info(rec);
      if (rec.state === "paused") {
        await this.#runtimes[rec.runtime].resume(id);
        await this.#setState(rec, "running");
        return this.#info(rec);
      }
      requireState(id, rec.state, "start", ["stopped", "lost"]);
      await this.#setState(rec, "starting");
      try {
        this.#bootPhases.set(id, await this.#host.bringUp(rec));
      } catch (err) {
        await this.#host.tearDown(rec).catch(() => undefined);
        await this.#setState(rec, "stopped");
        throw err;
      }
      await this.#setState(rec, "running");
      return this.#info(rec);
    });
  }

  /**
   * Deletes the VM. It disappears from `listVms`/`getVm` at once; the sandbox teardown (which
   * takes runsc a second or more) finishes in the background unless `wait` is set. A crash
   * half-way is finished by the next `open`.
   */
  async deleteVm(id: string, opts: { wait?: boolean } = {}): Promise<void> {
    const marking = this.#lock.run(id, async () => {
      const r = await this.#record(id);
      assertTransition(id, r.state, "deleting");
      await this.#setState(r, "deleting");
      return r;
    });
    this.#marking.add(marking);
    const rec = await marking.finally(() => this.#marking.delete(marking));
    const done = this.#lock
      .run(id, async () => {
        // A frozen sandbox's tasks would hold a kill pending until thawed (cgroup v1).
        await this.#runtimes[rec.runtime].thaw(id).catch(() => undefined);
        await this.#host.tearDown(rec);
        await this.#host.removeFiles(id);
        await this.#layers.gc();
      })
      .finally(() => {
        this.#deleting.delete(id);
        this.#bootPhases.delete(id);
        this.#capturePhases.delete(id);
      });
    this.#deleting.set(id, done);
    if (opts.wait) await done;
    else done.catch(() => undefined); // recovery finishes it on the next open
  }

  /**
   * Bytes the VM sent and received so far (its veth's counters, seen from the host), for
   * activity tracking. Zero for a VM that is not up.
   */
  async netStats(id: string): Promise<{ rxBytes: number; txBytes: number }> {
    await this.#record(id);
    const dir = `/sys/class/net/${hostIfName(id)}/statistics`;
    const read = (f: string) => fs.readFile(`${dir}/${f}`, "utf8").then(Number, () => 0);
    // The host end's rx is what the VM transmitted, and the other way round.
    const [rx, tx] = await Promise.all([read("tx_bytes"), read("rx_bytes")]);
    return { rxBytes: rx, txBytes: tx };
  }

  // ---------------------------------------------------------------- snapshots and forks

  /**
   * Takes a disk snapshot: the VM's writable layer becomes a new read-only layer. A running VM
   * keeps running; it is paused only while its layer is copied, after a sync. The layer is on
   * stable storage before the record that names it is written.
   *
   * With `memory` (see {@link MemoryMode}), a running or paused VM's memory is captured with its
   * layer at one instant (prepare its agent, pause, checkpoint, copy the layer, resume): a VM
   * created from the snapshot resumes its processes. The image is sealed like the layer before
   * the record is written; `sizeBytes` counts both.
   */
  async snapshotVm(id: string, opts: { name?: string; owner?: string; memory?: MemoryMode } = {}): Promise<SnapshotRecord> {
    if (opts.owner !== undefined) checkOwner(opts.owner);
    if (opts.memory === true || opts.memory === "auto") {
      const captured = await this.#captureMemory(id, opts.memory, { sealImage: true });
      if (captured) {
        const { layer, image, rec, layerBytes, imageBytes, fromState, timer } = captured;
        try {
          const memory: MemorySnapshot = { bytes: imageBytes, network: "netstack", agentBundle: rec.agentBundle ?? "", createdFromState: fromState, image, limits: rec.limits, caches: rec.caches ?? [] };
          const snap = await this.#saveSnapshot(rec, layer, layerBytes + imageBytes, timer, opts, memory);
          // The first create from it takes a target made ahead too, unless it comes at once.
          this.#schedulePrepare(snap.id);
          return snap;
        } finally {
          this.#layers.release(layer);
          this.#images.release(image);
        }
      }
    }
    const { layer, rec, sizeBytes, timer } = await this.#captureLayer(id);
    try {
      return await this.#saveSnapshot(rec, layer, sizeBytes, timer, opts);
    } finally {
      this.#layers.release(layer);
    }
  }

  /** The record of a snapshot of `rec` whose own (sealed) layer is `layer`, written durably. */
  async #saveSnapshot(rec: VmRecord, layer: string, sizeBytes: number, timer: PhaseTimer, opts: { name?: string; owner?: string }, memory?: MemorySnapshot): Promise<SnapshotRecord> {
    const snap: SnapshotRecord = {
      id: `snap-${newId()}`,
      image: rec.image,
      layers: [layer, ...rec.layers],
      sourceVmId: rec.id,
      sizeBytes,
      ...(memory !== undefined ? { memory } : {}),
      createdAt: new Date().toISOString(),
      ...(opts.name !== undefined ? { name: opts.name } : {}),
      ...(opts.owner !== undefined ? { owner: opts.owner } : {}),
    };
    await this.#records.saveSnapshot(snap);
    timer.end("record");
    return snap;
  }

  /**
   * Creates `count` new VMs from the VM's current disk. The source keeps running.
   *
   * With `memory` (see {@link MemoryMode}): one checkpoint of the source, restored into each copy
   * ({@link FORK_RESTORE_CONCURRENCY} at a time), so each runs the source's processes on, on the
   * captured layer (shared by reference) under its own empty upper dir, with its own address and
   * hostname (its id). If any copy fails, the copies already made are deleted and it throws.
   */
  async forkVm(id: string, opts: { count?: number; owner?: string; memory?: MemoryMode } = {}): Promise<VmInfo[]> {
    if (opts.owner !== undefined) checkOwner(opts.owner);
    const count = opts.count ?? 1;
    if (!Number.isInteger(count) || count < 1 || count > 64) throw new EngineError(ErrorCode.InvalidArgument, "count must be an integer from 1 to 64");
    if (opts.memory === true || opts.memory === "auto") {
      // The copies' targets are made on the captured layer while runsc still saves the memory.
      let forks: Promise<VmInfo[]> | undefined;
      const captured = await this.#captureMemory(id, opts.memory, {
        sealImage: false,
        whileSaving: (capture, saved) => (forks = this.#restoreForks(id, count, opts.owner, capture, saved)),
      });
      if (captured) {
        if (!forks) throw new EngineError(ErrorCode.Internal, `VM ${id}'s capture resolved without sealing its layer`);
        return forks;
      }
    }
    const { layer, rec } = await this.#captureLayer(id);
    try {
      const forks: VmInfo[] = [];
      for (let i = 0; i < count; i++) {
        forks.push(
          await this.#createFromLayers({
            image: rec.image,
            layers: [layer, ...rec.layers],
            runtime: rec.runtime,
            limits: rec.limits,
            egress: rec.egress,
            ...(rec.firewall !== undefined ? { firewall: rec.firewall } : {}),
            ...(opts.owner !== undefined ? { owner: opts.owner } : {}),
          }),
        );
      }
      return forks;
    } finally {
      this.#layers.release(layer);
      await this.#layers.gc();
    }
  }

  /**
   * `count` copies restored from one fork's capture, started as soon as its layer is sealed: each
   * copy's target is made while the image is still being written and restored into once `saved`
   * resolves (a rejection fails and tears down every copy). The layer and image are let go once
   * the copies run and the capture has settled.
   */
  async #restoreForks(sourceId: string, count: number, owner: string | undefined, captured: SealedLayer, saved: Promise<void>): Promise<VmInfo[]> {
    const { layer, image, rec } = captured;
    const how: StartHow = { kind: "restore", imageDir: this.#images.partialPath(image), agentBundle: rec.agentBundle ?? "", caches: rec.caches ?? [], gate: () => saved };
    const one = () =>
      this.#createFromLayers(
        {
          image: rec.image,
          layers: [layer, ...rec.layers],
          runtime: "runsc",
          limits: rec.limits,
          egress: rec.egress,
          ...(rec.firewall !== undefined ? { firewall: rec.firewall } : {}),
          ...(owner !== undefined ? { owner } : {}),
        },
        { how, restoredFrom: sourceId },
      );
    try {
      const results: Array<PromiseSettledResult<VmInfo>> = [];
      let next = 0;
      const worker = async () => {
        while (next < count) {
          const i = next++;
          results[i] = await one().then(
            (value) => ({ status: "fulfilled" as const, value }),
            (reason: unknown) => ({ status: "rejected" as const, reason }),
          );
        }
      };
      await Promise.all(Array.from({ length: Math.min(FORK_RESTORE_CONCURRENCY, count) }, worker));
      const failed = results.find((r) => r.status === "rejected");
      const made = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
      if (failed) {
        for (const vm of made) await this.deleteVm(vm.id, { wait: true }).catch(() => undefined);
        throw failed.reason;
      }
      return made;
    } finally {
      // The capture may still be writing the image (every copy failed early).
      await saved.catch(() => undefined);
      this.#layers.release(layer);
      await this.#images.discard(image);
      await this.#layers.gc();
    }
  }

  /**
   * Whether `snapshotVm`/`forkVm` with `memory: true` would be tried for this VM now: a running
   * or paused runsc VM booted on netstack, on an engine that runs netstack, with an agent that has
   * `ckpt.prepare` (not asked of a paused VM, whose agent cannot answer).
   */
  async canCheckpoint(id: string): Promise<boolean> {
    this.#assertOpen();
    return this.#lock.run(id, async () => (await this.#whyNotCheckpoint(await this.#record(id))) === undefined);
  }

  /** Why the VM cannot be checkpointed now (the error to throw), or undefined when it can. */
  async #whyNotCheckpoint(rec: VmRecord): Promise<EngineError | undefined> {
    if (rec.state !== "running" && rec.state !== "paused") {
      return new EngineError(ErrorCode.InvalidState, `cannot capture the memory of VM ${rec.id}: it is ${rec.state} (needs running or paused)${rec.state === "stopped" || rec.state === "lost" ? "; start it first" : ""}`);
    }
    if (rec.runtime !== "runsc") return new EngineError(ErrorCode.Unsupported, `VM ${rec.id} runs on runc, which has no memory checkpoints; only runsc VMs do`);
    if (!this.#runtimes.runsc.canCheckpoint) return new EngineError(ErrorCode.Unsupported, `this engine runs runsc on ${this.features.network}, which runsc cannot checkpoint; memory snapshots need netstack`);
    if (rec.network !== "netstack") {
      return new EngineError(ErrorCode.Unsupported, `VM ${rec.id}'s sandbox was started on ${rec.network ?? "an unrecorded network stack"}, which runsc cannot checkpoint; stop and start it to move it onto netstack`);
    }
    return rec.state === "running" ? this.#agentRefusal(rec.id) : undefined;
  }

  /** UNSUPPORTED when the VM's (answering) agent has no `ckpt.prepare`. */
  async #agentRefusal(id: string): Promise<EngineError | undefined> {
    const { features } = await this.#host.agent(id).call({ op: "version" }, "version");
    if (features?.includes(AGENT_FEATURES.checkpoint)) return undefined;
    return new EngineError(ErrorCode.Unsupported, `VM ${id}'s agent predates memory checkpoints (no ${AGENT_FEATURES.checkpoint}); stop and start it to get the current agent`);
  }

  /**
   * Captures a running or paused VM's memory and layer at one instant (memory/checkpoint.ts),
   * both reserved for the caller, who releases them; the layer is sealed, the image too if asked
   * (a fork restores from the unsealed one and discards it). Resolves undefined when `mode` is
   * "auto" and the VM cannot be checkpointed. A refused or failed capture leaves the VM as it was
   * (running or paused, its agent listening again) and no files behind.
   *
   * `whileSaving` is called once the layer is sealed, while runsc still writes the image, with a
   * promise that resolves once the image is complete (just before this resolves) or rejects with
   * the capture's error; on failure the capture waits for what it returned to settle before it
   * removes the layer and image.
   */
  async #captureMemory(
    id: string,
    mode: true | "auto",
    opts: { sealImage: boolean; whileSaving?: (capture: SealedLayer, saved: Promise<void>) => Promise<unknown> },
  ): Promise<MemoryCapture | undefined> {
    return this.#lock.run(id, async () => {
      const rec = await this.#record(id);
      const why = await this.#whyNotCheckpoint(rec);
      if (why) {
        if (mode === "auto") return undefined;
        throw why;
      }
      const runtime = this.#runtimes.runsc;
      const fromState = rec.state === "paused" ? "paused" : "running";
      const p = this.#paths.vm(id);
      const timer = new PhaseTimer();
      this.#capturePhases.set(id, timer.phases);
      if (fromState === "paused") {
        // A paused VM's agent must answer ckpt.prepare: it runs for that moment and is paused again after.
        await runtime.resume(id);
        const refusal = await this.#agentRefusal(id).catch(async (err: unknown) => {
          await runtime.pause(id);
          throw err;
        });
        if (refusal) {
          await runtime.pause(id);
          if (mode === "auto") return undefined;
          throw refusal;
        }
      }
      const layer = this.#layers.reserve();
      const image = this.#images.reserve();
      const saved = settleable();
      // The layer is sealed while runsc saves the memory (checkpointVm copies it first).
      let sealing: Promise<number> | undefined;
      let users: Promise<unknown> | undefined;
      const copyUpper = async (upper: string) => {
        await this.#layers.copy(layer, upper);
        sealing = this.#layers.seal(layer, timer);
        const { whileSaving } = opts;
        if (whileSaving) users = sealing.then(() => whileSaving({ layer, image, rec }, saved.promise));
        // Awaited below on every path; until then a rejection is not an unhandled one.
        for (const p of [sealing, users]) p?.catch(() => undefined);
      };
      // The image is sealed (or measured) as soon as runsc has written it, while the VM resumes.
      let imageDone: Promise<number> | undefined;
      let relistened: Promise<void> | undefined;
      const relisten = () => (relistened ??= fromState === "paused" ? Promise.resolve() : this.#host.waitForAgent(id, AGENT_RELISTEN_WAIT_MS).catch(() => undefined));
      const onSaved = () => {
        imageDone = opts.sealImage ? this.#images.seal(image) : diskUsageBytes(this.#images.partialPath(image));
        imageDone.catch(() => undefined);
      };
      try {
        let timings: CheckpointTimings;
        try {
          await fs.mkdir(this.#images.dir, { recursive: true, mode: 0o700 });
          timings = await checkpointVm(
            runtime,
            // Straight to the agent: GuestOps refuses a VM whose record says paused.
            { id, runDir: p.run, upperDir: p.upper, prepare: () => this.#host.agent(id).prepareCheckpoint() },
            { imageDir: this.#images.partialPath(image), copyUpper, maxImageBytes: maxImageBytes(rec.limits.memoryMb), onSaved },
          );
        } finally {
          if (fromState === "paused") await runtime.pause(id);
        }
        timer.end("capture");
        Object.assign(timer.phases, { prepare: timings.prepareMs, pause: timings.pauseMs, checkpoint: timings.checkpointMs, copy: timings.copyMs });
        // The source's agent listens again on the marker (a few ms, beside the seals): the VM is
        // not handed back deaf, or its next request finds no socket. A paused source's agent
        // answers once the VM resumes; one that never does is the guest's own loss, reported by
        // its next request, and does not hold the snapshot up past the bound.
        void relisten(); // started now, awaited below
        // Both settle before a failure discards both: neither is removed while still being sealed.
        const [layerBytes, imageBytes] = await Promise.allSettled([sealing, imageDone ?? Promise.reject(new EngineError(ErrorCode.Internal, `VM ${id}'s checkpoint returned without its image`))]);
        await relisten();
        if (layerBytes.status === "rejected") throw layerBytes.reason;
        if (imageBytes.status === "rejected") throw imageBytes.reason;
        if (layerBytes.value === undefined) throw new EngineError(ErrorCode.Internal, `VM ${id}'s checkpoint returned without copying its layer`);
        saved.resolve();
        return { layer, image, rec, layerBytes: layerBytes.value, imageBytes: imageBytes.value, fromState, timer };
      } catch (err) {
        saved.reject(err);
        await sealing?.catch(() => undefined);
        await imageDone?.catch(() => undefined);
        await relisten(); // a failed capture hands the VM back too (checkpointVm wrote the marker)
        await users?.catch(() => undefined);
        await this.#layers.discard(layer);
        await this.#images.discard(image);
        throw err;
      }
    });
  }

  async listSnapshots(): Promise<SnapshotRecord[]> {
    return this.#records.allSnapshots();
  }

  async getSnapshot(id: string): Promise<SnapshotRecord> {
    return this.#records.snapshot(id);
  }

  /**
   * Deletes a snapshot. Its layer is shared by reference with the VMs booted from it (and with
   * snapshots taken of those), so the files go only when nothing references them any more; its
   * memory image, which only its record names, goes with it.
   */
  async deleteSnapshot(id: string): Promise<void> {
    await this.#lock.run(id, async () => {
      await this.#records.snapshot(id);
      // Its restore target goes first: it holds the memory image.
      await this.#dropPrepared(id);
      await this.#records.removeSnapshot(id);
    });
    await this.#layers.gc();
    await this.#images.gc();
  }

  /** Snapshot layers on disk right now (for tests and metrics). */
  async layerIds(): Promise<string[]> {
    return this.#layers.ids();
  }

  /** Copies the VM's writable layer into a new, reserved layer; the caller releases it. */
  async #captureLayer(id: string): Promise<{ layer: string; rec: VmRecord; sizeBytes: number; timer: PhaseTimer }> {
    return this.#lock.run(id, async () => {
      const rec = await this.#record(id);
      requireState(id, rec.state, "snapshot", ["running", "stopped"]);
      const layer = this.#layers.reserve();
      const p = this.#paths.vm(id);
      const timer = new PhaseTimer();
      this.#capturePhases.set(id, timer.phases);
      try {
        // The VM holds still only while its upper dir is copied: paused if it runs (no guest
        // `sync` first: under runsc with --overlay2=none every write(2) the guest completed is
        // already in the host file and a MAP_SHARED mapping is the host file's own pages, and
        // runc writes the host filesystem directly, so the upper dir holds everything; a sync
        // would only make the VM's own disk durable, which cost 0.6 s at 400 MB written), or
        // with its disk mounted for the copy if it is stopped.
        let release: () => Promise<void>;
        if (rec.state === "running") {
          // Frozen through its cgroup (a kernel write, ~1 ms) where the host has one; else the
          // runtime's pause (a CLI process each way).
          const runtime = this.#runtimes[rec.runtime];
          if (await runtime.freeze(id)) release = () => runtime.thaw(id);
          else {
            await runtime.pause(id);
            release = () => runtime.resume(id);
          }
          timer.end("pause");
        } else {
          await mountDisk(p);
          timer.end("mount");
          release = () => unmountDisk(p);
        }
        try {
          await this.#layers.copy(layer, p.upper);
        } catch (err) {
          await release();
          throw err;
        }
        timer.end("copy");
        // The VM runs again (or its disk is unmounted) while the copy is flushed.
        const released = timer.track(rec.state === "running" ? "resume" : "unmount", release());
        const [sealed, freed] = await Promise.allSettled([this.#layers.seal(layer, timer), released]);
        if (freed.status === "rejected") throw freed.reason;
        if (sealed.status === "rejected") throw sealed.reason;
        return { layer, rec, sizeBytes: sealed.value, timer };
      } catch (err) {
        await this.#layers.discard(layer);
        throw err;
      }
    });
  }

  // ---------------------------------------------------------------- helpers

  async #agentFor(id: string) {
    const rec = await this.#record(id);
    requireState(id, rec.state, "reach the guest of", ["running"]);
    return this.#host.agent(id);
  }

  async #record(id: string): Promise<VmRecord> {
    if (!Records.isVmId(id) || this.#deleting.has(id)) throw new EngineError(ErrorCode.VmNotFound, `VM ${id} not found`);
    const rec = await this.#records.readVm(id);
    if (!rec || rec.state === "deleting" || rec.state === "deleted") throw new EngineError(ErrorCode.VmNotFound, `VM ${id} not found`);
    return rec;
  }

  async #assertImage(image: string): Promise<void> {
    const ok = /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(image) && (await fs.access(`${this.options.imagesDir}/${image}/rootfs`).then(() => true, () => false));
    if (!ok) throw new EngineError(ErrorCode.ImageNotFound, `image ${image} not found in ${this.options.imagesDir}; build it with scripts/setup.sh`);
  }

  async #setState(rec: VmRecord, to: VmState): Promise<void> {
    assertTransition(rec.id, rec.state, to);
    rec.state = to;
    if (to !== "lost") delete rec.lostReason;
    await this.#records.saveVm(rec);
  }

  #info(rec: VmRecord): VmInfo {
    return {
      id: rec.id,
      state: rec.state,
      runtime: rec.runtime,
      image: rec.image,
      limits: rec.limits,
      egress: rec.egress,
      createdAt: rec.createdAt,
      ...(rec.firewall !== undefined ? { firewall: rec.firewall } : {}),
      ...(rec.name !== undefined ? { name: rec.name } : {}),
      ...(rec.snapshotId !== undefined ? { snapshotId: rec.snapshotId } : {}),
      ...(rec.net ? { ip: rec.net.guestIp, gatewayIp: rec.net.hostIp } : {}),
      ...(rec.state === "lost" && rec.lostReason !== undefined ? { lostReason: rec.lostReason } : {}),
      ...(rec.owner !== undefined ? { owner: rec.owner } : {}),
      ...(rec.restoredFrom !== undefined ? { restoredFrom: rec.restoredFrom } : {}),
    };
  }

  #assertOpen(): void {
    if (this.#closed) throw new EngineError(ErrorCode.InvalidState, "engine is closed");
  }
}

/** A capture's layer (sealed), memory image (reserved; complete once the capture resolves) and source record. */
interface SealedLayer {
  layer: string;
  image: string;
  rec: VmRecord;
}

/** What {@link Engine.#captureMemory} hands its caller: the layer and image, both reserved. */
interface MemoryCapture extends SealedLayer {
  layerBytes: number;
  imageBytes: number;
  fromState: "running" | "paused";
  timer: PhaseTimer;
}

/** The restore target made ahead (`Engine.#prepareRestore`). */
interface PreparedRestore {
  snapshotId: string;
  rec: VmRecord;
  /** Resolves once runsc made the target; rejects if making it failed (it is torn down then). */
  made: Promise<void>;
  isMade: boolean;
  /** Resolved by the create that takes it (the restore goes on); rejected to drop it. */
  go: ReturnType<typeof settleable>;
  /** The whole bring-up: made, waiting, restored, running; or torn down and rejected. */
  up: Promise<VmInfo>;
}

function sameLimits(a: VmLimits, b: VmLimits): boolean {
  return a.memoryMb === b.memoryMb && a.cpus === b.cpus && a.pids === b.pids && a.diskMb === b.diskMb;
}

/** A promise and its resolve/reject, for a result that another step settles. */
function settleable(): { promise: Promise<void>; resolve: () => void; reject: (err: unknown) => void } {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  // Its users may not be waiting yet when it rejects (or there may be none).
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/** Owner labels are short printable text (they go into records and logs). */
function checkOwner(owner: string): string {
  if (typeof owner !== "string" || !/^[\x21-\x7e]{1,200}$/.test(owner)) {
    throw new EngineError(ErrorCode.InvalidArgument, "owner must be 1 to 200 printable ASCII characters without spaces");
  }
  return owner;
}

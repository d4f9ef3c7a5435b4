import crypto from "node:crypto";
import fs from "node:fs/promises";
import { resolveOptions, type EngineOptions, type Egress, type ResolvedOptions, type RuntimeName, type VmLimits } from "./config.js";
import { copyLayer, removeTree } from "./disk/layers.js";
import { mountDisk, unmountDisk } from "./disk/writable.js";
import { EngineError, ErrorCode } from "./errors.js";
import { GuestOps } from "./guest-ops.js";
import { assertTransition, requireState, type VmState } from "./lifecycle.js";
import { findProcs, waitGone } from "./host/procs.js";
import { KeyedMutex } from "./mutex.js";
import { claimsOf, release } from "./net/ipam.js";
import { deleteNetns } from "./net/netns.js";
import { hostIfName, netnsName, Paths } from "./paths.js";
import { checkHost } from "./preflight.js";
import { RuncRuntime } from "./runtime/runc.js";
import { RunscRuntime } from "./runtime/runsc.js";
import type { Runtime } from "./runtime/types.js";
import { listDir, readJson, writeJsonAtomic } from "./store.js";
import { VmHost, type VmRecord } from "./vm-host.js";

export interface CreateVmOpts {
  /** Boot from this snapshot's disk. */
  snapshotId?: string;
  /** Base image when no snapshot is given. Default: the engine's `defaultImage`. */
  image?: string;
  name?: string;
  runtime?: RuntimeName;
  limits?: Partial<VmLimits>;
  egress?: Egress;
}

export interface SnapshotRecord {
  id: string;
  name?: string;
  image: string;
  /** This snapshot's own layer first, then the layers it was taken on top of. */
  layers: string[];
  sourceVmId: string;
  sizeBytes: number;
  createdAt: string;
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
  /** The VM's address on its veth, while it runs. */
  ip?: string;
  /** The host's end of the veth: where the allowed host ports are reached. */
  gatewayIp?: string;
  createdAt: string;
}

const ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";
function newId(len = 12): string {
  const bytes = crypto.randomBytes(len);
  let out = "";
  for (const b of bytes) out += ID_ALPHABET[b % ID_ALPHABET.length];
  return out;
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
  readonly guest: GuestOps;
  readonly #paths: Paths;
  readonly #host: VmHost;
  readonly #runtimes: Record<RuntimeName, Runtime>;
  readonly #lock = new KeyedMutex();
  /** Layers being written right now: never garbage-collected. */
  readonly #inflightLayers = new Set<string>();
  /** How long each phase of the last boot of a VM took (diagnostics; not persisted). */
  readonly #bootPhases = new Map<string, Record<string, number>>();
  /** VMs whose teardown runs in the background after delete returned. */
  readonly #deleting = new Map<string, Promise<void>>();
  #closed = false;

  private constructor(options: ResolvedOptions) {
    this.options = options;
    this.#paths = new Paths(options.dataDir);
    this.#runtimes = {
      runsc: new RunscRuntime(options.runscPath, `${this.#paths.runtimeRoot}/runsc`, options.runscPlatform),
      runc: new RuncRuntime(options.runcPath, `${this.#paths.runtimeRoot}/runc`),
    };
    this.#host = new VmHost(options, this.#paths, this.#runtimes);
    this.guest = new GuestOps((id) => this.#agentFor(id));
  }

  /** Opens (and recovers) the engine on its data dir. Fails with HOST_NOT_READY saying what is missing. */
  static async open(opts: EngineOptions = {}): Promise<Engine> {
    const options = resolveOptions(opts);
    await checkHost(options);
    const engine = new Engine(options);
    await engine.#acquireLock();
    try {
      await engine.#recover();
    } catch (err) {
      await engine.close();
      throw err;
    }
    return engine;
  }

  /** Resolves once every VM teardown still running in the background (after `deleteVm`) is done. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.#deleting.values()]);
  }

  /** Releases the data dir. Running VMs keep running; the next `open` adopts them. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.settled();
    this.#closed = true;
    await fs.rm(this.#paths.lockFile, { force: true });
  }

  // ---------------------------------------------------------------- VMs

  async createVm(opts: CreateVmOpts = {}): Promise<VmInfo> {
    this.#assertOpen();
    let image = opts.image ?? this.options.defaultImage;
    let layers: string[] = [];
    if (opts.snapshotId !== undefined) {
      const snap = await this.#snapshot(opts.snapshotId);
      image = snap.image;
      layers = snap.layers;
    }
    return this.#createFromLayers({ ...opts, image, layers });
  }

  async #createFromLayers(opts: CreateVmOpts & { image: string; layers: string[] }): Promise<VmInfo> {
    await this.#assertImage(opts.image);
    const runtime = opts.runtime ?? this.options.runtime;
    if (runtime !== "runsc" && runtime !== "runc") throw new EngineError(ErrorCode.InvalidArgument, `unknown runtime ${String(runtime)}; use runsc or runc`);
    const limits = validateLimits({ ...this.options.limits, ...opts.limits });
    const now = new Date().toISOString();
    const rec: VmRecord = {
      id: newId(),
      state: "creating",
      runtime,
      image: opts.image,
      layers: opts.layers,
      limits,
      egress: opts.egress ?? this.options.egress,
      createdAt: now,
      updatedAt: now,
      ...(opts.name !== undefined ? { name: opts.name } : {}),
      ...(opts.snapshotId !== undefined ? { snapshotId: opts.snapshotId } : {}),
    };
    return this.#lock.run(rec.id, async () => {
      // The record goes to disk before any resource exists, so a crash at any later point is
      // found by recovery, which tears down by the names derived from the id.
      await this.#host.save(rec);
      try {
        const t0 = performance.now();
        await this.#host.createDisk(rec);
        const diskMs = performance.now() - t0;
        this.#bootPhases.set(rec.id, { disk: diskMs, ...(await this.#host.bringUp(rec)) });
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
   * Milliseconds each phase of the VM's last boot by this engine took (`disk`, `mounts`,
   * `network`, `spec`, `runtimeRun`, `agentReady`), for diagnostics; undefined if unknown.
   */
  bootPhases(id: string): Record<string, number> | undefined {
    return this.#bootPhases.get(id);
  }

  async getVm(id: string): Promise<VmInfo> {
    return this.#info(await this.#record(id));
  }

  async listVms(): Promise<VmInfo[]> {
    const out: VmInfo[] = [];
    for (const id of await listDir(this.#paths.vmsDir)) {
      if (this.#deleting.has(id)) continue;
      const rec = await readJson<VmRecord>(this.#paths.vm(id).record);
      if (rec && rec.state !== "deleting" && rec.state !== "deleted") out.push(this.#info(rec));
    }
    return out;
  }

  /** Stops the VM's processes and releases its runtime resources; the disk is kept. */
  async stopVm(id: string): Promise<VmInfo> {
    return this.#lock.run(id, async () => {
      const rec = await this.#record(id);
      if (rec.state === "stopped") return this.#info(rec);
      requireState(id, rec.state, "stop", ["running"]);
      await this.#setState(rec, "stopping");
      await this.#host.agent(id).call({ op: "sync" }, "ok", 10_000).catch(() => undefined);
      await this.#host.tearDown(rec);
      await this.#setState(rec, "stopped");
      return this.#info(rec);
    });
  }

  /** Boots a stopped VM again on the disk it had. */
  async startVm(id: string): Promise<VmInfo> {
    return this.#lock.run(id, async () => {
      const rec = await this.#record(id);
      if (rec.state === "running") return this.#info(rec);
      requireState(id, rec.state, "start", ["stopped"]);
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
    const rec = await this.#lock.run(id, async () => {
      const r = await this.#record(id);
      assertTransition(id, r.state, "deleting");
      await this.#setState(r, "deleting");
      return r;
    });
    const done = this.#lock
      .run(id, async () => {
        await this.#host.tearDown(rec);
        await this.#host.removeFiles(id);
        await this.#gcLayers();
      })
      .finally(() => {
        this.#deleting.delete(id);
        this.#bootPhases.delete(id);
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
   * keeps running; it is paused only while its layer is copied, after a sync.
   */
  async snapshotVm(id: string, opts: { name?: string } = {}): Promise<SnapshotRecord> {
    const { layer, rec, sizeBytes } = await this.#captureLayer(id);
    try {
      const snap: SnapshotRecord = {
        id: `snap-${newId()}`,
        image: rec.image,
        layers: [layer, ...rec.layers],
        sourceVmId: id,
        sizeBytes,
        createdAt: new Date().toISOString(),
        ...(opts.name !== undefined ? { name: opts.name } : {}),
      };
      await writeJsonAtomic(this.#paths.snapshotRecord(snap.id), snap);
      return snap;
    } finally {
      this.#inflightLayers.delete(layer);
    }
  }

  /** Creates `count` new VMs from the VM's current disk. The source keeps running. */
  async forkVm(id: string, opts: { count?: number } = {}): Promise<VmInfo[]> {
    const count = opts.count ?? 1;
    if (!Number.isInteger(count) || count < 1 || count > 64) throw new EngineError(ErrorCode.InvalidArgument, "count must be an integer from 1 to 64");
    const { layer, rec } = await this.#captureLayer(id);
    try {
      const forks: VmInfo[] = [];
      for (let i = 0; i < count; i++) {
        forks.push(
          await this.#createFromLayers({ image: rec.image, layers: [layer, ...rec.layers], runtime: rec.runtime, limits: rec.limits, egress: rec.egress }),
        );
      }
      return forks;
    } finally {
      this.#inflightLayers.delete(layer);
      await this.#gcLayers();
    }
  }

  async listSnapshots(): Promise<SnapshotRecord[]> {
    const out: SnapshotRecord[] = [];
    for (const f of await listDir(this.#paths.snapshotsDir)) {
      if (!f.endsWith(".json")) continue;
      const s = await readJson<SnapshotRecord>(`${this.#paths.snapshotsDir}/${f}`);
      if (s) out.push(s);
    }
    return out;
  }

  async getSnapshot(id: string): Promise<SnapshotRecord> {
    return this.#snapshot(id);
  }

  /**
   * Deletes a snapshot. Its layer is shared by reference with the VMs booted from it (and with
   * snapshots taken of those), so the files go only when nothing references them any more.
   */
  async deleteSnapshot(id: string): Promise<void> {
    await this.#snapshot(id);
    await fs.rm(this.#paths.snapshotRecord(id), { force: true });
    await this.#gcLayers();
  }

  /** Snapshot layers on disk right now (for tests and metrics). */
  async layerIds(): Promise<string[]> {
    return listDir(this.#paths.layersDir);
  }

  async #captureLayer(id: string): Promise<{ layer: string; rec: VmRecord; sizeBytes: number }> {
    return this.#lock.run(id, async () => {
      const rec = await this.#record(id);
      requireState(id, rec.state, "snapshot", ["running", "stopped"]);
      const layer = newId(16);
      this.#inflightLayers.add(layer);
      const p = this.#paths.vm(id);
      await fs.mkdir(this.#paths.layersDir, { recursive: true });
      try {
        let sizeBytes: number;
        if (rec.state === "running") {
          await this.#host.agent(id).call({ op: "sync" }, "ok", 60_000);
          const runtime = this.#runtimes[rec.runtime];
          await runtime.pause(id);
          try {
            sizeBytes = await copyLayer(p.upper, this.#paths.layer(layer));
          } finally {
            await runtime.resume(id);
          }
        } else {
          await mountDisk(p);
          try {
            sizeBytes = await copyLayer(p.upper, this.#paths.layer(layer));
          } finally {
            await unmountDisk(p);
          }
        }
        return { layer, rec, sizeBytes };
      } catch (err) {
        this.#inflightLayers.delete(layer);
        await removeTree(this.#paths.layer(layer));
        throw err;
      }
    });
  }

  /** Removes layers no VM and no snapshot references. Refcounts are derived, never stored. */
  async #gcLayers(): Promise<void> {
    const used = new Set<string>(this.#inflightLayers);
    for (const id of await listDir(this.#paths.vmsDir)) {
      const rec = await readJson<VmRecord>(this.#paths.vm(id).record);
      for (const l of rec?.layers ?? []) used.add(l);
    }
    for (const s of await this.listSnapshots()) for (const l of s.layers) used.add(l);
    for (const entry of await listDir(this.#paths.layersDir)) {
      const base = entry.replace(/\.partial$/, "");
      if (!used.has(base) || entry.endsWith(".partial")) {
        if (this.#inflightLayers.has(base)) continue;
        await removeTree(this.#paths.layer(entry));
      }
    }
  }

  // ---------------------------------------------------------------- recovery

  /**
   * Makes the data dir consistent after any crash: VMs that were running and still answer are
   * adopted; half-made or half-deleted VMs are torn down and removed; anything else that was up
   * is brought down to `stopped` with its disk intact. Runtime containers, network claims and
   * half-written layers that no record explains are removed.
   */
  async #recover(): Promise<void> {
    await fs.mkdir(this.#paths.vmsDir, { recursive: true, mode: 0o700 });
    await this.#settleRuntimeCommands();
    const known = new Set<string>();
    for (const id of await listDir(this.#paths.vmsDir)) {
      const rec = await readJson<VmRecord>(this.#paths.vm(id).record).catch(() => undefined);
      if (!rec) {
        await this.#host.removeFiles(id);
        continue;
      }
      await this.#recoverVm(rec);
      if (await fs.access(this.#paths.vm(id).dir).then(() => true, () => false)) known.add(id);
    }
    for (const runtime of Object.values(this.#runtimes)) {
      for (const cid of await runtime.list()) if (!known.has(cid)) await runtime.destroy(cid);
    }
    // Sandbox processes the runtime has no state for (a `run` killed half-way) are killed outright.
    for (const p of await findProcs(`${this.#paths.vmsDir}/`)) {
      const bundle = p.argv.find((a) => a.startsWith("--bundle="));
      const id = bundle ? /\/vms\/([a-z0-9]+)\/bundle/.exec(bundle)?.[1] : undefined;
      if (id && !known.has(id)) process.kill(p.pid, "SIGKILL");
    }
    for (const c of await claimsOf(this.options.dataDir)) {
      if (known.has(c.vmId)) continue;
      await deleteNetns(netnsName(c.vmId), hostIfName(c.vmId));
      await release(c.slot, c.vmId);
    }
    await this.#gcLayers();
  }

  /**
   * A crashed engine leaves its runtime commands (`runsc run`, `delete`, …) running as orphans;
   * one that finishes after recovery looked would leave a sandbox nobody knows. Wait for them
   * (they end within seconds), and kill those that do not.
   */
  async #settleRuntimeCommands(): Promise<void> {
    const root = this.#paths.runtimeRoot;
    const cmds = (await findProcs(`--root=${root}/`)).filter((p) => !p.argv.some((a) => a === "boot" || a === "gofer"));
    const left = await waitGone(
      cmds.map((p) => p.pid),
      30_000,
    );
    for (const pid of left) process.kill(pid, "SIGKILL");
  }

  async #recoverVm(rec: VmRecord): Promise<void> {
    switch (rec.state) {
      case "creating":
      case "deleting":
      case "deleted":
        await this.#host.tearDown(rec);
        await this.#host.removeFiles(rec.id);
        return;
      case "running":
        if (await this.#host.alive(rec)) return; // adopted as is
        await this.#host.tearDown(rec);
        rec.state = "stopped";
        await this.#host.save(rec);
        return;
      case "starting":
      case "stopping":
      case "stopped":
        await this.#host.tearDown(rec);
        if (rec.state !== "stopped") {
          rec.state = "stopped";
          await this.#host.save(rec);
        }
        return;
    }
  }

  // ---------------------------------------------------------------- helpers

  async #agentFor(id: string) {
    const rec = await this.#record(id);
    requireState(id, rec.state, "reach the guest of", ["running"]);
    return this.#host.agent(id);
  }

  async #record(id: string): Promise<VmRecord> {
    if (!/^[a-z0-9]{1,32}$/.test(id) || this.#deleting.has(id)) throw new EngineError(ErrorCode.VmNotFound, `VM ${id} not found`);
    const rec = await readJson<VmRecord>(this.#paths.vm(id).record);
    if (!rec || rec.state === "deleting" || rec.state === "deleted") throw new EngineError(ErrorCode.VmNotFound, `VM ${id} not found`);
    return rec;
  }

  async #snapshot(id: string): Promise<SnapshotRecord> {
    const snap = /^snap-[a-z0-9]{1,32}$/.test(id) ? await readJson<SnapshotRecord>(this.#paths.snapshotRecord(id)) : undefined;
    if (!snap) throw new EngineError(ErrorCode.SnapshotNotFound, `snapshot ${id} not found`);
    return snap;
  }

  async #assertImage(image: string): Promise<void> {
    const ok = /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(image) && (await fs.access(`${this.options.imagesDir}/${image}/rootfs`).then(() => true, () => false));
    if (!ok) throw new EngineError(ErrorCode.ImageNotFound, `image ${image} not found in ${this.options.imagesDir}; build it with scripts/setup.sh`);
  }

  async #setState(rec: VmRecord, to: VmState): Promise<void> {
    assertTransition(rec.id, rec.state, to);
    rec.state = to;
    await this.#host.save(rec);
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
      ...(rec.name !== undefined ? { name: rec.name } : {}),
      ...(rec.snapshotId !== undefined ? { snapshotId: rec.snapshotId } : {}),
      ...(rec.net ? { ip: rec.net.guestIp, gatewayIp: rec.net.hostIp } : {}),
    };
  }

  #assertOpen(): void {
    if (this.#closed) throw new EngineError(ErrorCode.InvalidState, "engine is closed");
  }

  async #acquireLock(): Promise<void> {
    await fs.mkdir(this.options.dataDir, { recursive: true, mode: 0o700 });
    const file = this.#paths.lockFile;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await fs.writeFile(file, String(process.pid), { flag: "wx", mode: 0o600 });
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        const pid = Number(await fs.readFile(file, "utf8").catch(() => "0"));
        if (pid > 0 && pid !== process.pid && processAlive(pid)) {
          throw new EngineError(ErrorCode.EngineLocked, `data dir ${this.options.dataDir} is in use by process ${pid}; stop it or use another data dir`);
        }
        await fs.rm(file, { force: true }); // stale: its owner is gone
      }
    }
    throw new EngineError(ErrorCode.EngineLocked, `could not lock ${file}`);
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function validateLimits(l: VmLimits): VmLimits {
  const check = (name: keyof VmLimits, min: number, max: number) => {
    const v = l[name];
    if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) {
      throw new EngineError(ErrorCode.InvalidArgument, `limits.${name} must be a number from ${min} to ${max}, got ${String(v)}`);
    }
  };
  check("memoryMb", 64, 1024 * 1024);
  check("cpus", 0.05, 1024);
  check("pids", 16, 1 << 22);
  check("diskMb", 64, 16 * 1024 * 1024);
  return { memoryMb: Math.floor(l.memoryMb), cpus: l.cpus, pids: Math.floor(l.pids), diskMb: Math.floor(l.diskMb) };
}

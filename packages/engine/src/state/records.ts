import fs from "node:fs/promises";
import type { PackageCache } from "../caches/ports.js";
import type { Egress, NetworkStack, RuntimeName, VmLimits } from "../config.js";
import { EngineError, ErrorCode } from "../errors.js";
import type { VmState } from "../lifecycle.js";
import type { Lease } from "../net/ipam.js";
import type { FirewallPolicy } from "../net/policy.js";
import type { Paths } from "../paths.js";
import { TEMP_MARK, listDir, readJson, writeJsonAtomic } from "./store.js";

/** What the engine keeps on disk for each VM (`<dataDir>/vms/<id>/vm.json`). */
export interface VmRecord {
  id: string;
  name?: string;
  state: VmState;
  runtime: RuntimeName;
  /** Base image name (`<imagesDir>/<image>/rootfs`). */
  image: string;
  /** Read-only snapshot layers above the image, newest first. */
  layers: string[];
  /** The snapshot this VM was created from, if any. */
  snapshotId?: string;
  limits: VmLimits;
  egress: Egress;
  /** The VM's own firewall (default deny plus its allow rules); when set, `egress` and the engine's host ports do not apply. */
  firewall?: FirewallPolicy;
  /** Network lease while the VM is up. */
  net?: Lease;
  /** The agent bundle version directory mounted at /.capsule while the VM is up. */
  agentBundle?: string;
  /**
   * runsc's network stack this VM's sandbox was started with (set at every boot; absent for runc
   * and for records older than this field). Only a netstack sandbox can be checkpointed, whatever
   * the engine runs now.
   */
  network?: NetworkStack;
  /** The package caches whose configs are mounted into the running sandbox (a restore needs the same mounts). */
  caches?: PackageCache[];
  /** The memory snapshot id (or, for a fork, the source VM id) this VM's processes were restored from. */
  restoredFrom?: string;
  /** Why the VM is `lost` (set with that state, cleared when it starts again). */
  lostReason?: string;
  /** The creator's owner label, written with the first record (before any resource exists). */
  owner?: string;
  createdAt: string;
  updatedAt: string;
}

/** A snapshot (`<dataDir>/snapshots/<id>.json`): an ordered list of read-only layers. */
export interface SnapshotRecord {
  id: string;
  name?: string;
  image: string;
  /** This snapshot's own layer first, then the layers it was taken on top of. */
  layers: string[];
  sourceVmId: string;
  /** The disk layer's bytes plus, for a memory snapshot, the memory image's. */
  sizeBytes: number;
  /** The creator's owner label (see the VM record's). */
  owner?: string;
  /** Present when the snapshot holds the VM's memory too: a VM created from it resumes its processes. */
  memory?: MemorySnapshot;
  createdAt: string;
}

/** What a memory snapshot holds beside its layers, and what a restore of it needs. */
export interface MemorySnapshot {
  /** The memory image's bytes. */
  bytes: number;
  network: "netstack";
  /** The agent bundle version dir the image's sandbox had mounted at /.capsule; a restore mounts the same one. */
  agentBundle: string;
  /** Whether the source VM was running or paused when the image was taken. */
  createdFromState: "running" | "paused";
  /** The image's id in the memory image store (`<dataDir>/memory/<id>`). */
  image: string;
  /** The source's limits: a restored sandbox keeps the memory it had. */
  limits: VmLimits;
  /** The package-cache configs the source had mounted (a restore needs the same mounts). */
  caches: PackageCache[];
}

const VM_ID = /^[a-z0-9]{1,32}$/;
const SNAPSHOT_ID = /^snap-[a-z0-9]{1,32}$/;

/**
 * The only code that reads and writes VM records (`vm.json`) and snapshot records. Every write is
 * atomic and durable (temp file, fsync, rename, fsync of the directory), so after a crash a
 * record is either the old one or the new one.
 */
export class Records {
  /**
   * Each VM's record as last written or read, as JSON. The engine holding the data dir's lock is
   * its only writer, so this is the file's content, and the guest operations that check a VM's
   * state on every call need no file read.
   */
  readonly #vms = new Map<string, string>();
  /** Counts record writes and removals. */
  #changes = 0;
  /**
   * When each VM's record last changed (a {@link #changes} count): a read that overlapped a change
   * of its own record does not fill the cache, while the other VMs' writes (the claims of a burst
   * of creates) leave it alone. Kept only while reads are under way: a read that starts later
   * sees every earlier change as before its start.
   */
  readonly #changedAt = new Map<string, number>();
  #reading = 0;

  constructor(private readonly paths: Paths) {}

  static isVmId(id: string): boolean {
    return VM_ID.test(id);
  }

  // ---------------------------------------------------------------- VMs

  /** Every directory under `vms/` (a crash may leave one whose record is missing or unreadable). */
  async vmIds(): Promise<string[]> {
    return listDir(this.paths.vmsDir);
  }

  /** The VM's record; undefined if it has none. Throws if the file exists but is unreadable. */
  async readVm(id: string): Promise<VmRecord | undefined> {
    if (!VM_ID.test(id)) return undefined;
    const cached = this.#vms.get(id);
    if (cached !== undefined) return JSON.parse(cached) as VmRecord; // a copy: callers change records
    const start = this.#changes;
    this.#reading++;
    try {
      const rec = await readJson<VmRecord>(this.paths.vm(id).record);
      if (rec && (this.#changedAt.get(id) ?? 0) <= start) this.#vms.set(id, JSON.stringify(rec));
      return rec;
    } finally {
      if (--this.#reading === 0) this.#changedAt.clear();
    }
  }

  /** Every readable VM record, in any state. */
  async allVms(): Promise<VmRecord[]> {
    const out: VmRecord[] = [];
    for (const id of await this.vmIds()) {
      const rec = await this.readVm(id).catch(() => undefined);
      if (rec) out.push(rec);
    }
    return out;
  }

  async saveVm(rec: VmRecord): Promise<void> {
    rec.updatedAt = new Date().toISOString();
    // Marked at both ends, so a read or another write of this record that overlaps this one
    // caches nothing: while it runs (or after it failed) the file may hold either record.
    // A read that both starts and ends inside this write may have cached the old record: at the
    // end the entry is replaced, or, when another write of it overlapped (or its mark was
    // cleared), dropped.
    const start = this.#changed(rec.id);
    this.#vms.delete(rec.id);
    try {
      await writeJsonAtomic(this.paths.vm(rec.id).record, rec);
    } catch (err) {
      this.#changed(rec.id);
      this.#vms.delete(rec.id);
      throw err;
    }
    const alone = this.#changedAt.get(rec.id) === start;
    this.#changed(rec.id);
    if (alone) this.#vms.set(rec.id, JSON.stringify(rec));
    else this.#vms.delete(rec.id);
  }

  /** Forgets a VM whose directory was removed. */
  forgetVm(id: string): void {
    this.#changed(id);
    this.#vms.delete(id);
  }

  /** Marks a change of the VM's record; returns its count. */
  #changed(id: string): number {
    this.#changedAt.set(id, ++this.#changes);
    return this.#changes;
  }

  // ---------------------------------------------------------------- snapshots

  async readSnapshot(id: string): Promise<SnapshotRecord | undefined> {
    return SNAPSHOT_ID.test(id) ? readJson<SnapshotRecord>(this.paths.snapshotRecord(id)) : undefined;
  }

  /** The snapshot's record, or SNAPSHOT_NOT_FOUND. */
  async snapshot(id: string): Promise<SnapshotRecord> {
    const snap = await this.readSnapshot(id);
    if (!snap) throw new EngineError(ErrorCode.SnapshotNotFound, `snapshot ${id} not found`);
    return snap;
  }

  async allSnapshots(): Promise<SnapshotRecord[]> {
    const out: SnapshotRecord[] = [];
    for (const f of await listDir(this.paths.snapshotsDir)) {
      if (!f.endsWith(".json")) continue;
      const s = await this.readSnapshot(f.slice(0, -".json".length)).catch(() => undefined);
      if (s) out.push(s);
    }
    return out;
  }

  async saveSnapshot(snap: SnapshotRecord): Promise<void> {
    await writeJsonAtomic(this.paths.snapshotRecord(snap.id), snap);
  }

  async removeSnapshot(id: string): Promise<void> {
    await fs.rm(this.paths.snapshotRecord(id), { force: true });
  }

  // ---------------------------------------------------------------- derived

  /**
   * Layers some VM record or snapshot record lists. Refcounts are derived, never stored. Throws
   * if any record is unreadable: better to collect nothing than a layer still in use.
   */
  async referencedLayers(): Promise<Set<string>> {
    const used = new Set<string>();
    for (const id of await this.vmIds()) for (const l of (await this.readVm(id))?.layers ?? []) used.add(l);
    for (const f of await listDir(this.paths.snapshotsDir)) {
      if (!f.endsWith(".json")) continue;
      for (const l of (await readJson<SnapshotRecord>(`${this.paths.snapshotsDir}/${f}`))?.layers ?? []) used.add(l);
    }
    return used;
  }

  /** Memory images some snapshot record names (see {@link referencedLayers}). */
  async referencedImages(): Promise<Set<string>> {
    const used = new Set<string>();
    for (const f of await listDir(this.paths.snapshotsDir)) {
      if (!f.endsWith(".json")) continue;
      const image = (await readJson<SnapshotRecord>(`${this.paths.snapshotsDir}/${f}`))?.memory?.image;
      if (image !== undefined) used.add(image);
    }
    return used;
  }

  /** Removes temp files of record writes a crash interrupted. Call only while nothing writes. */
  async removeTempFiles(): Promise<void> {
    const dirs = [this.paths.snapshotsDir, ...(await this.vmIds()).map((id) => this.paths.vm(id).dir)];
    for (const dir of dirs) {
      for (const f of await listDir(dir).catch(() => [])) {
        if (f.includes(TEMP_MARK)) await fs.rm(`${dir}/${f}`, { force: true });
      }
    }
  }
}

/**
 * Maps accounts to engine VMs and snapshots. Every method takes the calling account and answers
 * VM_NOT_FOUND / SNAPSHOT_NOT_FOUND (404, never 403) for ids the account does not own, so ids of
 * other accounts do not leak. Suspended VMs are woken transparently by `ensureRunning`.
 * @module
 */
import os from "node:os";
import type { Engine, SnapshotRecord, VmInfo, VmLimits, VmState as EngineState } from "@capsule/engine";
import type { Logger } from "pino";
import type { ActivityTracker } from "./activity.js";
import type { Db } from "./db.js";
import { ApiError, toApiError } from "./errors.js";
import type { Account } from "./keys.js";
import type { CreateVmBody, GroupSpec, UserSpec } from "./schemas.js";
import { shq } from "./shell.js";

/** What the API remembers about a VM besides what the engine keeps. */
interface VmRow {
  id: string;
  account_id: string;
  name: string | null;
  idle_timeout_seconds: number | null;
  activity_threshold_bytes: number;
  /** What the owner asked for last: a `suspended` VM wakes on use, a `stopped` one only on start. */
  desired: "running" | "suspended" | "stopped";
  created_at: string;
}

interface SnapshotRow {
  id: string;
  account_id: string;
  name: string | null;
  source_vm_id: string | null;
  created_at: string;
}

export type ApiVmState = "starting" | "running" | "suspending" | "suspended" | "stopped";

export interface VmView {
  id: string;
  name: string | null;
  state: ApiVmState;
  createdAt: string;
  snapshotId: string | null;
  idleTimeoutSeconds: number | null;
  sizing: { vcpuCount: number; memSizeMib: number; rootfsSizeMb: number };
}

export interface SnapshotView {
  snapshotId: string;
  name: string | null;
  state: "ready";
  sourceVmId: string | null;
  accountId: string;
  createdAt: string;
  sizeBytes: number;
  failed: false;
  cancelled: false;
  lost: false;
  deleted: false;
  snapshotPersistence: { type: "persistent" };
}

export interface VmServiceOptions {
  /** Idle timeout for VMs created without `idleTimeoutSeconds`; null = never. */
  defaultIdleTimeoutSeconds: number | null;
  egress: "none" | "internet";
}

/** Create fields for features Capsule does not have; rejected instead of silently ignored. */
const UNSUPPORTED_CREATE_FIELDS = ["gitRepos", "domains", "systemd", "nics", "dockerCredentials", "udpHolePunchPorts", "spec"] as const;

export function apiState(state: EngineState, desired: VmRow["desired"]): ApiVmState {
  switch (state) {
    case "running":
      return "running";
    case "stopping":
      return desired === "suspended" ? "suspending" : "stopped";
    case "stopped":
      return desired === "stopped" ? "stopped" : "suspended";
    default:
      return "starting";
  }
}

export class VmService {
  constructor(
    readonly engine: Engine,
    private readonly db: Db,
    readonly activity: ActivityTracker,
    private readonly log: Logger,
    private readonly opts: VmServiceOptions,
  ) {}

  // ---------------------------------------------------------------- VMs

  async create(account: Account, body: CreateVmBody): Promise<{ id: string; domains: string[]; consoleUrl: null; snapshotId: string | null }> {
    for (const f of UNSUPPORTED_CREATE_FIELDS) {
      if (body[f] !== undefined && body[f] !== null) throw new ApiError("CREATE_VM_BAD_REQUEST", `${f} is not supported by Capsule; remove it from the request`);
    }
    if (body.git !== undefined && !isEmptyGit(body.git)) throw new ApiError("CREATE_VM_BAD_REQUEST", "git repos and config are not supported by Capsule; clone inside the VM with exec instead");
    if (body.template?.baseImage !== undefined) throw new ApiError("CREATE_VM_BAD_REQUEST", "template.baseImage (Dockerfile builds) is not supported by Capsule; create from a snapshot instead");
    const snapshotId = body.snapshotId ?? body.template?.snapshotId ?? undefined;
    if (snapshotId !== undefined) this.#ownedSnapshot(account, snapshotId);
    const limits = sizingToLimits({ ...body, ...stripNullish(body.template) });
    let vm: VmInfo;
    try {
      vm = await this.engine.createVm({
        ...(snapshotId !== undefined ? { snapshotId } : {}),
        ...(body.name ? { name: body.name } : {}),
        limits,
        egress: this.opts.egress,
      });
    } catch (err) {
      throw toApiError(err, "CREATE_VM_BAD_REQUEST");
    }
    const idle = body.idleTimeoutSeconds === undefined ? this.opts.defaultIdleTimeoutSeconds : body.idleTimeoutSeconds;
    this.db
      .prepare("INSERT INTO vms (id, account_id, name, idle_timeout_seconds, activity_threshold_bytes, desired, created_at) VALUES (?, ?, ?, ?, ?, 'running', ?)")
      .run(vm.id, account.id, body.name ?? null, idle, body.activityThresholdBytes ?? 0, vm.createdAt);
    this.activity.touch(vm.id);
    try {
      await this.#provision(vm.id, body.groups ?? [], body.users ?? [], body.additionalFiles ?? {});
    } catch (err) {
      await this.delete(account, vm.id).catch(() => undefined);
      throw toApiError(err, "CREATE_VM_BAD_REQUEST");
    }
    this.log.info({ vmId: vm.id, account: account.name, snapshotId }, "vm created");
    return { id: vm.id, domains: [], consoleUrl: null, snapshotId: snapshotId ?? null };
  }

  async list(account: Account): Promise<VmView[]> {
    const rows = this.db.prepare("SELECT * FROM vms WHERE account_id = ? ORDER BY created_at").all(account.id) as VmRow[];
    const byId = new Map((await this.engine.listVms()).map((v) => [v.id, v]));
    return rows.flatMap((r) => {
      const vm = byId.get(r.id);
      return vm ? [view(r, vm)] : [];
    });
  }

  async get(account: Account, id: string): Promise<VmView> {
    const row = this.#ownedVm(account, id);
    return view(row, await this.#engineVm(row));
  }

  /** Returns at once: the engine finishes the teardown in the background (and after a crash). */
  async delete(account: Account, id: string): Promise<void> {
    const row = this.#ownedVm(account, id);
    try {
      await this.engine.deleteVm(row.id);
    } catch (err) {
      if (toApiError(err).code !== "VM_NOT_FOUND") throw toApiError(err);
    }
    this.db.prepare("DELETE FROM vms WHERE id = ?").run(row.id);
    this.activity.forget(row.id);
    this.log.info({ vmId: id, account: account.name }, "vm deleted");
  }

  async start(account: Account, id: string, idleTimeoutSeconds?: number | null): Promise<void> {
    const row = this.#ownedVm(account, id);
    if (idleTimeoutSeconds !== undefined) this.db.prepare("UPDATE vms SET idle_timeout_seconds = ? WHERE id = ?").run(idleTimeoutSeconds, id);
    this.#setDesired(row.id, "running");
    await this.#wake(row.id);
  }

  /** stop, kill and suspend all stop the sandbox (processes end, the disk stays); they differ in how it wakes. */
  async halt(account: Account, id: string, how: "stopped" | "suspended"): Promise<void> {
    const row = this.#ownedVm(account, id);
    await this.suspendById(row.id, how);
  }

  async suspendById(id: string, how: "stopped" | "suspended" = "suspended"): Promise<void> {
    this.#setDesired(id, how);
    try {
      await this.engine.stopVm(id);
    } catch (err) {
      throw toApiError(err);
    }
    this.log.info({ vmId: id, how }, "vm halted");
  }

  /**
   * Resolves the VM for a guest operation: the account must own it, and a suspended VM is woken.
   * A VM stopped by its owner stays stopped (VM_NOT_RUNNING) until started.
   */
  async ensureRunning(account: Account, id: string): Promise<string> {
    const row = this.#ownedVm(account, id);
    const vm = await this.#engineVm(row);
    if (vm.state === "running") return row.id;
    if (row.desired === "stopped" && vm.state === "stopped") {
      throw new ApiError("VM_NOT_RUNNING", `VM ${id} is stopped; start it with POST /v1/vms/${id}/start`);
    }
    await this.#wake(row.id);
    return row.id;
  }

  /** Every account's VMs by API state, for metrics. */
  async stateCounts(): Promise<Record<ApiVmState, number>> {
    const counts: Record<ApiVmState, number> = { starting: 0, running: 0, suspending: 0, suspended: 0, stopped: 0 };
    const desired = new Map((this.db.prepare("SELECT id, desired FROM vms").all() as VmRow[]).map((r) => [r.id, r.desired]));
    for (const vm of await this.engine.listVms()) {
      const d = desired.get(vm.id);
      if (d) counts[apiState(vm.state, d)]++;
    }
    return counts;
  }

  /** The VM's idle settings, for the idle monitor. */
  idleSettings(): Array<{ id: string; idleTimeoutSeconds: number; activityThresholdBytes: number }> {
    return (
      this.db.prepare("SELECT id, idle_timeout_seconds, activity_threshold_bytes FROM vms WHERE desired = 'running' AND idle_timeout_seconds IS NOT NULL").all() as VmRow[]
    ).map((r) => ({ id: r.id, idleTimeoutSeconds: r.idle_timeout_seconds as number, activityThresholdBytes: r.activity_threshold_bytes }));
  }

  async fork(account: Account, id: string, count: number): Promise<string[]> {
    const row = this.#ownedVm(account, id);
    let forks: VmInfo[];
    try {
      forks = await this.engine.forkVm(row.id, { count });
    } catch (err) {
      throw toApiError(err);
    }
    const insert = this.db.prepare(
      "INSERT INTO vms (id, account_id, name, idle_timeout_seconds, activity_threshold_bytes, desired, created_at) VALUES (?, ?, ?, ?, ?, 'running', ?)",
    );
    for (const f of forks) {
      insert.run(f.id, account.id, row.name, row.idle_timeout_seconds, row.activity_threshold_bytes, f.createdAt);
      this.activity.touch(f.id);
    }
    return forks.map((f) => f.id);
  }

  // ---------------------------------------------------------------- snapshots

  async snapshot(account: Account, id: string, name: string | null): Promise<SnapshotRecord> {
    const row = this.#ownedVm(account, id);
    let snap: SnapshotRecord;
    try {
      snap = await this.engine.snapshotVm(row.id, name ? { name } : {});
    } catch (err) {
      throw toApiError(err);
    }
    this.db.prepare("INSERT INTO snapshots (id, account_id, name, source_vm_id, created_at) VALUES (?, ?, ?, ?, ?)").run(snap.id, account.id, name, row.id, snap.createdAt);
    this.log.info({ vmId: id, snapshotId: snap.id, sizeBytes: snap.sizeBytes }, "snapshot taken");
    return snap;
  }

  async listSnapshots(account: Account): Promise<SnapshotView[]> {
    const rows = this.db.prepare("SELECT * FROM snapshots WHERE account_id = ? ORDER BY created_at").all(account.id) as SnapshotRow[];
    const byId = new Map((await this.engine.listSnapshots()).map((s) => [s.id, s]));
    return rows.flatMap((r) => {
      const s = byId.get(r.id);
      return s ? [snapshotView(r, s)] : [];
    });
  }

  async getSnapshot(account: Account, id: string): Promise<SnapshotView> {
    const row = this.#ownedSnapshot(account, id);
    try {
      return snapshotView(row, await this.engine.getSnapshot(row.id));
    } catch (err) {
      throw toApiError(err);
    }
  }

  renameSnapshot(account: Account, id: string, name: string | null): void {
    const row = this.#ownedSnapshot(account, id);
    this.db.prepare("UPDATE snapshots SET name = ? WHERE id = ?").run(name, row.id);
  }

  async deleteSnapshot(account: Account, id: string): Promise<void> {
    const row = this.#ownedSnapshot(account, id);
    try {
      await this.engine.deleteSnapshot(row.id);
    } catch (err) {
      if (toApiError(err).code !== "SNAPSHOT_NOT_FOUND") throw toApiError(err);
    }
    this.db.prepare("DELETE FROM snapshots WHERE id = ?").run(row.id);
  }

  // ---------------------------------------------------------------- recovery

  /**
   * Makes SQLite and the engine agree after a restart. Rows whose VM or snapshot the engine no
   * longer has are dropped; engine VMs no account owns (a crash between the engine's create and
   * our insert) are deleted, since nobody could ever reach them. VMs the engine recovered as
   * stopped but that were meant to run are marked suspended, so the next request restarts them.
   */
  async reconcile(): Promise<void> {
    const engineVms = new Map((await this.engine.listVms()).map((v) => [v.id, v]));
    const rows = this.db.prepare("SELECT * FROM vms").all() as VmRow[];
    const owned = new Set(rows.map((r) => r.id));
    for (const r of rows) {
      const vm = engineVms.get(r.id);
      if (!vm) this.db.prepare("DELETE FROM vms WHERE id = ?").run(r.id);
      else if (vm.state === "stopped" && r.desired === "running") this.#setDesired(r.id, "suspended");
    }
    for (const id of engineVms.keys()) {
      if (owned.has(id)) continue;
      this.log.warn({ vmId: id }, "deleting an engine VM that no account owns");
      await this.engine.deleteVm(id).catch((err: unknown) => this.log.error({ err, vmId: id }, "could not delete orphan VM"));
    }
    const snaps = new Set((await this.engine.listSnapshots()).map((s) => s.id));
    for (const r of this.db.prepare("SELECT id FROM snapshots").all() as Array<{ id: string }>) {
      if (!snaps.has(r.id)) this.db.prepare("DELETE FROM snapshots WHERE id = ?").run(r.id);
    }
  }

  // ---------------------------------------------------------------- helpers

  #ownedVm(account: Account, id: string): VmRow {
    const row = this.db.prepare("SELECT * FROM vms WHERE id = ? AND account_id = ?").get(id, account.id) as VmRow | undefined;
    if (!row) throw new ApiError("VM_NOT_FOUND", `VM not found: ${id}`);
    return row;
  }

  #ownedSnapshot(account: Account, id: string): SnapshotRow {
    const row = this.db.prepare("SELECT * FROM snapshots WHERE id = ? AND account_id = ?").get(id, account.id) as SnapshotRow | undefined;
    if (!row) throw new ApiError("SNAPSHOT_NOT_FOUND", `snapshot not found: ${id}`);
    return row;
  }

  async #engineVm(row: VmRow): Promise<VmInfo> {
    try {
      return await this.engine.getVm(row.id);
    } catch (err) {
      throw toApiError(err);
    }
  }

  #setDesired(id: string, desired: VmRow["desired"]): void {
    this.db.prepare("UPDATE vms SET desired = ? WHERE id = ?").run(desired, id);
  }

  async #wake(id: string): Promise<void> {
    try {
      const before = await this.engine.getVm(id);
      if (before.state === "running") return;
      await this.engine.startVm(id);
    } catch (err) {
      throw toApiError(err);
    }
    this.#setDesired(id, "running");
    this.activity.touch(id);
    this.log.info({ vmId: id }, "vm woken");
  }

  /** Groups first (users may name them), then users, then files — all through the guest as root. */
  async #provision(id: string, groups: GroupSpec[], users: UserSpec[], files: NonNullable<CreateVmBody["additionalFiles"]>): Promise<void> {
    const commands = [...groups.map(groupadd), ...users.map(useradd)];
    for (const command of commands) {
      const r = await this.engine.guest.exec(id, { command, timeoutMs: 60_000 });
      if (r.exitCode !== 0) throw new ApiError("CREATE_VM_BAD_REQUEST", `setting up the VM failed: \`${command}\` exited ${r.exitCode}: ${r.stderr.trim()}`);
    }
    for (const [path, f] of Object.entries(files)) {
      const data = Buffer.from(f.content, f.encoding === "base64" ? "base64" : "utf8");
      await this.engine.guest.writeFile(id, path, data, { mkdirs: true, mode: f.executable ? 0o755 : 0o644 });
    }
  }
}

function groupadd(g: GroupSpec): string {
  return ["groupadd", ...(g.gid !== undefined ? ["-g", String(g.gid)] : []), ...(g.system ? ["-r"] : []), shq(g.name)].join(" ");
}

function useradd(u: UserSpec): string {
  return [
    "useradd -m",
    ...(u.uid !== undefined ? ["-u", String(u.uid)] : []),
    ...(u.gecos !== undefined ? ["-c", shq(u.gecos)] : []),
    ...(u.groups?.length ? ["-G", shq(u.groups.join(","))] : []),
    ...(u.home !== undefined ? ["-d", shq(u.home)] : []),
    "-s",
    shq(u.shell ?? "/bin/bash"),
    ...(u.system ? ["-r"] : []),
    shq(u.name),
  ].join(" ");
}

function isEmptyGit(git: unknown): boolean {
  if (typeof git !== "object" || git === null) return false;
  const g = git as { config?: unknown; repos?: unknown };
  const emptyConfig = g.config === undefined || (typeof g.config === "object" && g.config !== null && Object.keys(g.config).length === 0);
  const noRepos = g.repos === undefined || (Array.isArray(g.repos) && g.repos.length === 0);
  return emptyConfig && noRepos;
}

function stripNullish<T extends object>(o: T | undefined): Partial<T> {
  return Object.fromEntries(Object.entries(o ?? {}).filter(([, v]) => v !== undefined && v !== null)) as Partial<T>;
}

/** Freestyle sizing (GB, vCPUs) to engine limits (MiB, cores); absent fields keep the engine defaults. */
export function sizingToLimits(s: { vcpuCount?: number | undefined; memSizeGb?: number | undefined; rootfsSizeGb?: number | undefined }): Partial<VmLimits> {
  return {
    ...(s.vcpuCount !== undefined ? { cpus: s.vcpuCount } : {}),
    ...(s.memSizeGb !== undefined ? { memoryMb: Math.round(s.memSizeGb * 1024) } : {}),
    ...(s.rootfsSizeGb !== undefined ? { diskMb: Math.round(s.rootfsSizeGb * 1024) } : {}),
  };
}

function view(r: VmRow, vm: VmInfo): VmView {
  return {
    id: r.id,
    name: r.name,
    state: apiState(vm.state, r.desired),
    createdAt: r.created_at,
    snapshotId: vm.snapshotId ?? null,
    idleTimeoutSeconds: r.idle_timeout_seconds,
    sizing: { vcpuCount: vm.limits.cpus, memSizeMib: vm.limits.memoryMb, rootfsSizeMb: vm.limits.diskMb },
  };
}

function snapshotView(r: SnapshotRow, s: SnapshotRecord): SnapshotView {
  return {
    snapshotId: r.id,
    name: r.name,
    state: "ready",
    sourceVmId: r.source_vm_id,
    accountId: r.account_id,
    createdAt: r.created_at,
    sizeBytes: s.sizeBytes,
    failed: false,
    cancelled: false,
    lost: false,
    deleted: false,
    snapshotPersistence: { type: "persistent" },
  };
}

/** Signal numbers for exit statuses (`os.constants.signals`), typed as a plain record. */
export const SIGNALS: Record<string, number> = { ...os.constants.signals };

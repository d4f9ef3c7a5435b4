/**
 * The flows that make and remove VMs and snapshots: create (engine VM, then the owner row, then
 * groups, users and files through the guest), fork, snapshot, delete, and the reconcile of the
 * rows against the engine after a restart. Ownership is checked before the engine is touched;
 * fork and snapshot take the row the guest gateway already checked.
 * @module
 */
import type { Engine, SnapshotRecord, VmInfo, VmLimits } from "@capsule/engine";
import type { Logger } from "pino";
import type { ActivityTracker } from "../activity.js";
import { ApiError, toApiError } from "../errors.js";
import type { Account } from "../keys.js";
import type { CreateVmBody, GroupSpec, UserSpec } from "../schemas.js";
import { shq } from "../shell.js";
import type { Quotas } from "../quotas.js";
import type { Rows, VmRow } from "./rows.js";

export interface ProvisioningOptions {
  /** Idle timeout for VMs created without `idleTimeoutSeconds`; null = never. */
  defaultIdleTimeoutSeconds: number | null;
  egress: "none" | "internet";
}

/** Create fields for features Capsule does not have; rejected instead of silently ignored. */
const UNSUPPORTED_CREATE_FIELDS = ["gitRepos", "domains", "systemd", "nics", "dockerCredentials", "udpHolePunchPorts", "spec"] as const;

export class Provisioning {
  constructor(
    private readonly engine: Engine,
    private readonly rows: Rows,
    private readonly activity: ActivityTracker,
    private readonly log: Logger,
    private readonly opts: ProvisioningOptions,
    private readonly quotas: Quotas,
  ) {}

  // ---------------------------------------------------------------- VMs

  async create(account: Account, body: CreateVmBody): Promise<{ id: string; domains: string[]; consoleUrl: null; snapshotId: string | null }> {
    for (const f of UNSUPPORTED_CREATE_FIELDS) {
      if (body[f] !== undefined && body[f] !== null) throw new ApiError("CREATE_VM_BAD_REQUEST", `${f} is not supported by Capsule; remove it from the request`);
    }
    if (body.git !== undefined && !isEmptyGit(body.git)) throw new ApiError("CREATE_VM_BAD_REQUEST", "git repos and config are not supported by Capsule; clone inside the VM with exec instead");
    if (body.template?.baseImage !== undefined) throw new ApiError("CREATE_VM_BAD_REQUEST", "template.baseImage (Dockerfile builds) is not supported by Capsule; create from a snapshot instead");
    const snapshotId = body.snapshotId ?? body.template?.snapshotId ?? undefined;
    if (snapshotId !== undefined) this.rows.ownedSnapshot(account, snapshotId);
    const limits = sizingToLimits({ ...body, ...stripNullish(body.template) });
    // Sizing, the account's VM caps and the host's capacity, before the engine makes anything.
    const ticket = await this.quotas.admitVms(account, this.quotas.fullLimits(limits), 1, true);
    let vm: VmInfo;
    try {
      vm = await this.engine.createVm({
        ...(snapshotId !== undefined ? { snapshotId } : {}),
        ...(body.name ? { name: body.name } : {}),
        limits,
        egress: this.opts.egress,
      });
    } catch (err) {
      ticket.release();
      throw toApiError(err, "CREATE_VM_BAD_REQUEST");
    }
    const idle = body.idleTimeoutSeconds === undefined ? this.opts.defaultIdleTimeoutSeconds : body.idleTimeoutSeconds;
    try {
      this.rows.insertVm({ id: vm.id, account_id: account.id, name: body.name ?? null, idle_timeout_seconds: idle, activity_threshold_bytes: body.activityThresholdBytes ?? 0, created_at: vm.createdAt });
    } finally {
      ticket.release(); // the row (and the engine's record) count the VM from here
    }
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

  /** Returns at once: the engine finishes the teardown in the background (and after a crash). */
  async delete(account: Account, id: string): Promise<void> {
    const row = this.rows.ownedVm(account, id);
    try {
      await this.engine.deleteVm(row.id);
    } catch (err) {
      if (toApiError(err).code !== "VM_NOT_FOUND") throw toApiError(err);
    }
    this.rows.deleteVm(row.id);
    this.activity.forget(row.id);
    this.log.info({ vmId: id, account: account.name }, "vm deleted");
  }

  /** Forks of a VM the caller owns (`source` from the guest gateway); they inherit its idle settings. */
  async fork(account: Account, source: VmRow, count: number): Promise<string[]> {
    let forks: VmInfo[];
    let ticket: { release(): void } | undefined;
    try {
      // Forks run with the source's size: the account's VM caps and the host's capacity first.
      const { limits } = await this.engine.getVm(source.id);
      ticket = await this.quotas.admitVms(account, limits, count, true);
      forks = await this.engine.forkVm(source.id, { count });
    } catch (err) {
      ticket?.release();
      throw toApiError(err);
    }
    try {
      for (const f of forks) {
        this.rows.insertVm({ id: f.id, account_id: account.id, name: source.name, idle_timeout_seconds: source.idle_timeout_seconds, activity_threshold_bytes: source.activity_threshold_bytes, created_at: f.createdAt });
        this.activity.touch(f.id);
      }
    } finally {
      ticket.release();
    }
    return forks.map((f) => f.id);
  }

  // ---------------------------------------------------------------- snapshots

  /** Snapshot of a VM the caller owns (`source` from the guest gateway). */
  async snapshot(account: Account, source: VmRow, name: string | null): Promise<SnapshotRecord> {
    const ticket = await this.quotas.admitSnapshot(account);
    let snap: SnapshotRecord;
    try {
      snap = await this.engine.snapshotVm(source.id, name ? { name } : {});
    } catch (err) {
      ticket.release();
      throw toApiError(err);
    }
    try {
      this.rows.insertSnapshot({ id: snap.id, account_id: account.id, name, source_vm_id: source.id, created_at: snap.createdAt });
    } finally {
      ticket.release();
    }
    this.log.info({ vmId: source.id, snapshotId: snap.id, sizeBytes: snap.sizeBytes }, "snapshot taken");
    return snap;
  }

  renameSnapshot(account: Account, id: string, name: string | null): void {
    const row = this.rows.ownedSnapshot(account, id);
    this.rows.renameSnapshot(row.id, name);
  }

  async deleteSnapshot(account: Account, id: string): Promise<void> {
    const row = this.rows.ownedSnapshot(account, id);
    try {
      await this.engine.deleteSnapshot(row.id);
    } catch (err) {
      if (toApiError(err).code !== "SNAPSHOT_NOT_FOUND") throw toApiError(err);
    }
    this.rows.deleteSnapshot(row.id);
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
    const rows = this.rows.allVms();
    const owned = new Set(rows.map((r) => r.id));
    for (const r of rows) {
      const vm = engineVms.get(r.id);
      if (!vm) this.rows.deleteVm(r.id);
      else if (vm.state === "stopped" && r.desired === "running") this.rows.setDesired(r.id, "suspended");
    }
    for (const id of engineVms.keys()) {
      if (owned.has(id)) continue;
      this.log.warn({ vmId: id }, "deleting an engine VM that no account owns");
      await this.engine.deleteVm(id).catch((err: unknown) => this.log.error({ err, vmId: id }, "could not delete orphan VM"));
    }
    const snaps = new Set((await this.engine.listSnapshots()).map((s) => s.id));
    for (const id of this.rows.allSnapshotIds()) {
      if (!snaps.has(id)) this.rows.deleteSnapshot(id);
    }
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

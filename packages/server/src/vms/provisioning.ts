/**
 * The flows that make and remove VMs and snapshots: create (engine VM, then the owner row, then
 * groups, users, files and services through the guest), fork, snapshot, delete, and the reconcile of the
 * rows against the engine after a restart. Ownership is checked before the engine is touched;
 * fork and snapshot take the row the guest gateway already checked.
 * @module
 */
import { ErrorCode, isEngineError, type Engine, type FirewallPolicy, type ServiceSpec, type SnapshotRecord, type VmInfo, type VmLimits } from "@capsule/engine";
import type { Logger } from "pino";
import type { ActivityTracker } from "../activity.js";
import { ApiError, toApiError } from "../errors.js";
import type { Account } from "../keys.js";
import type { CreateVmRequest, GroupSpec, SystemdPatchedService, UserSpec } from "../schemas.js";
import { patchServiceSpec, serviceId, toServiceSpec } from "../services.js";
import { shq } from "@capsule/contract/shell";
import type { QuotaTicket, Quotas } from "../quotas.js";
import { checkDomains, type DomainMapping, type DomainPolicy } from "./domains.js";
import { isBuildOwner } from "../builds/owner.js";
import { isPoolOwner, type PoolKind, type WarmPool } from "./pool.js";
import type { Rows, VmRow } from "./rows.js";

export interface ProvisioningOptions {
  /** Idle timeout for VMs created without `idleTimeoutSeconds`; null = never. */
  defaultIdleTimeoutSeconds: number | null;
  egress: "none" | "internet";
  /**
   * Start even though the database is empty while the engine holds VMs or snapshots (a lost or
   * replaced server.db): they are kept, quarantined, instead of refusing to start.
   */
  startWithUnowned?: boolean;
  /** Which `domains` an account may claim; absent: none. */
  domains?: DomainPolicy;
}

/** Environment switch for {@link ProvisioningOptions.startWithUnowned}, named in the refusal. */
export const START_WITH_UNOWNED_ENV = "CAPSULE_START_WITH_UNOWNED";

/**
 * The owner label the API server gives every engine VM and snapshot it makes: the account and
 * the create intent's token (see Rows.beginIntent). Other creators (a pool, a build) use other
 * prefixes; reconcile leaves those to them.
 */
export function ownerLabel(accountId: string, token: string): string {
  return `api:${accountId}:${token}`;
}

function parseOwner(owner: string | undefined): { accountId: string; token: string } | undefined {
  const m = /^api:([^:]+):([0-9a-f]+)$/.exec(owner ?? "");
  return m ? { accountId: m[1] as string, token: m[2] as string } : undefined;
}

/** Create fields for features Capsule does not have; rejected instead of silently ignored. */
const UNSUPPORTED_CREATE_FIELDS = ["gitRepos", "nics", "dockerCredentials", "udpHolePunchPorts", "spec"] as const;

export class Provisioning {
  constructor(
    private readonly engine: Engine,
    private readonly rows: Rows,
    private readonly activity: ActivityTracker,
    private readonly log: Logger,
    private readonly opts: ProvisioningOptions,
    private readonly quotas: Quotas,
    private readonly pool?: WarmPool,
  ) {}

  // ---------------------------------------------------------------- VMs

  /**
   * `firewall` (the v5 API's, mapped) gives the VM its own policy instead of the server's egress;
   * it may only narrow the server's own setting: a server run with `--egress none` lets no VM
   * past the host (no public or CIDR rules). A warm VM of the server's default kind serves either:
   * its claim replaces its network with the policy.
   */
  async create(account: Account, body: CreateVmRequest, opts: { firewall?: FirewallPolicy } = {}): Promise<{ id: string; domains: string[]; consoleUrl: null; snapshotId: string | null }> {
    const egress = this.opts.egress;
    const firewall = opts.firewall;
    if (egress === "none" && firewall?.rules.some((r) => r.to === "public" || r.to === "cidr")) {
      throw new ApiError("CREATE_VM_BAD_REQUEST", "this server gives VMs no network access beyond the host (it runs with --egress none): leave public and CIDR rules out of the firewall");
    }
    for (const f of UNSUPPORTED_CREATE_FIELDS) {
      if (body[f] !== undefined && body[f] !== null) throw new ApiError("CREATE_VM_BAD_REQUEST", `${f} is not supported by Capsule; remove it from the request`);
    }
    const snapshotId = body.snapshotId ?? body.template?.snapshotId ?? undefined;
    if (snapshotId !== undefined) this.rows.ownedSnapshot(account, snapshotId);
    // A memory snapshot's VM is a restore of its processes (or, with memory: false, a boot the
    // pool's VMs of that snapshot would not be: they are restores too), so never a warm VM.
    const fromMemory = snapshotId !== undefined && (await this.engine.getSnapshot(snapshotId)).memory !== undefined;
    const domains = this.#checkDomains(account, body.domains ?? []);
    // Checked before any VM exists: a spec Capsule cannot run fails the create at once.
    const services = (body.systemd?.services ?? []).map((s) => toServiceSpec(s, undefined));
    const limits = sizingToLimits({ ...body, ...stripNullish(body.template) });
    const full = this.quotas.fullLimits(limits);
    const kind: PoolKind = { ...(snapshotId !== undefined ? { snapshotId } : {}), limits: full, egress };
    // A warm VM of this kind, if the pool has one, thawed: it already runs and counts on the host,
    // so only the account's caps are checked for it.
    let warm = fromMemory ? undefined : await this.pool?.take(kind);
    const ticket = await this.#admitCreate(account, kind, warm === undefined).catch((err: unknown) => {
      if (warm) this.pool?.putBack(warm);
      throw err;
    });
    // The intent is on disk before the engine makes or hands over anything: a crash from here on
    // leaves either nothing, or an engine VM that reconcile knows for garbage by its owner label.
    const intent = this.rows.beginIntent(account.id, "vm");
    const owner = ownerLabel(account.id, intent);
    let vm: VmInfo | undefined;
    try {
      if (warm) {
        vm = await this.engine.claimVm(warm.id, { from: this.pool!.ownerOf(warm), owner, ...(body.name ? { name: body.name } : {}), ...(firewall ? { firewall } : {}) }).catch((err: unknown) => {
          // A firewall the engine refuses is the request's fault, not the warm VM's (which is untouched).
          if (isEngineError(err, ErrorCode.InvalidArgument)) {
            this.pool?.putBack(warm!);
            throw err;
          }
          this.log.warn({ err, vmId: warm!.id }, "pool: a warm VM could not be claimed; booting one instead");
          this.pool?.discard(warm!);
          warm = undefined;
          return undefined;
        });
      }
      vm ??= await this.engine.createVm({
        ...(snapshotId !== undefined ? { snapshotId } : {}),
        ...(body.memory !== undefined ? { memory: body.memory } : {}),
        ...(body.name ? { name: body.name } : {}),
        limits,
        egress,
        ...(firewall ? { firewall } : {}),
        owner,
      });
    } catch (err) {
      ticket.release();
      this.rows.endIntent(intent);
      throw toApiError(err, "CREATE_VM_BAD_REQUEST");
    }
    const idle = body.idleTimeoutSeconds === undefined ? this.opts.defaultIdleTimeoutSeconds : body.idleTimeoutSeconds;
    try {
      this.rows.insertVm({ id: vm.id, account_id: account.id, name: body.name ?? null, idle_timeout_seconds: idle, activity_threshold_bytes: body.activityThresholdBytes ?? 0, created_at: vm.createdAt });
      this.rows.endIntent(intent);
    } finally {
      ticket.release(); // the row (and the engine's record) count the VM from here
    }
    this.activity.touch(vm.id);
    try {
      await this.#provision(vm.id, body.groups ?? [], body.users ?? [], body.additionalFiles ?? {});
      await this.#installServices(vm.id, services, body.systemd?.patchedServices ?? []);
      // Last: a name the account moves here from another of its VMs stays there if this create fails.
      this.rows.domains.claim(account, vm.id, domains);
    } catch (err) {
      await this.delete(account, vm.id).catch(() => undefined);
      throw toApiError(err, "CREATE_VM_BAD_REQUEST");
    }
    this.log.info({ vmId: vm.id, account: account.name, snapshotId }, "vm created");
    return { id: vm.id, domains: domains.map((d) => d.domain), consoleUrl: null, snapshotId: snapshotId ?? null };
  }

  /**
   * The account's caps and, for a VM that must boot, the host's capacity. A create the host has no
   * room for first takes room back from the warm pool, then is admitted again.
   */
  async #admitCreate(account: Account, kind: PoolKind, boots: boolean): Promise<QuotaTicket> {
    const admit = () => this.quotas.admitVms(account, kind.limits, 1, true, { host: boots });
    try {
      return await admit();
    } catch (err) {
      const reason = err instanceof ApiError ? err.extra.reason : undefined;
      if (!boots || !this.pool || (reason !== "HOST_MEMORY" && reason !== "HOST_CPU")) throw err;
      if (!(await this.pool.yieldFor(kind, kind.limits.memoryMb, kind.limits.cpus))) throw err;
      return admit();
    }
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

  /**
   * Forks of a VM the caller owns (`source` from the guest gateway); they inherit its idle
   * settings. `memory`: see the engine's forkVm ("auto": memory forks where the VM can be checkpointed).
   */
  async fork(account: Account, source: VmRow, count: number, memory: boolean | "auto"): Promise<string[]> {
    let forks: VmInfo[];
    let ticket: { release(): void } | undefined;
    let intent: string | undefined;
    try {
      // Forks run with the source's size: the account's VM caps and the host's capacity first.
      const { limits } = await this.engine.getVm(source.id);
      ticket = await this.quotas.admitVms(account, limits, count, true);
      intent = this.rows.beginIntent(account.id, "fork");
      forks = await this.engine.forkVm(source.id, { count, memory, owner: ownerLabel(account.id, intent) });
    } catch (err) {
      ticket?.release();
      if (intent !== undefined) this.rows.endIntent(intent);
      throw toApiError(err);
    }
    try {
      for (const f of forks) {
        this.rows.insertVm({ id: f.id, account_id: account.id, name: source.name, idle_timeout_seconds: source.idle_timeout_seconds, activity_threshold_bytes: source.activity_threshold_bytes, created_at: f.createdAt });
        this.activity.touch(f.id);
      }
      this.rows.endIntent(intent);
    } finally {
      ticket.release();
    }
    return forks.map((f) => f.id);
  }

  // ---------------------------------------------------------------- snapshots

  /**
   * Snapshot of a VM the caller owns (`source` from the guest gateway). `memory`: see the
   * engine's snapshotVm (true: memory and disk or an error; "auto": memory where it can be
   * checkpointed; false: the disk). A memory image counts in the snapshot's `sizeBytes`, so the
   * account's byte cap covers it.
   */
  async snapshot(account: Account, source: VmRow, name: string | null, memory: boolean | "auto"): Promise<SnapshotRecord> {
    const ticket = await this.quotas.admitSnapshot(account);
    const intent = this.rows.beginIntent(account.id, "snapshot");
    let snap: SnapshotRecord;
    try {
      snap = await this.engine.snapshotVm(source.id, { ...(name ? { name } : {}), memory, owner: ownerLabel(account.id, intent) });
    } catch (err) {
      ticket.release();
      this.rows.endIntent(intent);
      throw toApiError(err);
    }
    try {
      this.rows.insertSnapshot({ id: snap.id, account_id: account.id, name, source_vm_id: source.id, created_at: snap.createdAt });
      this.rows.endIntent(intent);
    } finally {
      ticket.release();
    }
    this.log.info({ vmId: source.id, snapshotId: snap.id, sizeBytes: snap.sizeBytes, memoryBytes: snap.memory?.bytes ?? 0 }, "snapshot taken");
    return snap;
  }

  renameSnapshot(account: Account, id: string, name: string | null): void {
    const row = this.rows.ownedSnapshot(account, id);
    this.rows.renameSnapshot(row.id, name);
  }

  async deleteSnapshot(account: Account, id: string): Promise<void> {
    const row = this.rows.ownedSnapshot(account, id);
    this.pool?.dropSnapshot(row.id);
    try {
      await this.engine.deleteSnapshot(row.id);
    } catch (err) {
      if (toApiError(err).code !== "SNAPSHOT_NOT_FOUND") throw toApiError(err);
    }
    this.rows.deleteSnapshot(row.id);
  }

  // ---------------------------------------------------------------- recovery

  /**
   * Makes SQLite and the engine agree after a restart; it deletes only what an owner record says
   * is garbage.
   * - Rows whose VM or snapshot the engine no longer has are dropped (nothing is left to lose).
   * - An engine VM or snapshot without a row whose owner label names a create intent still on
   *   record was made but never recorded (a crash between the engine and the insert): nobody was
   *   ever told its id, so it is deleted.
   * - Anything else without a row (another creator's, an older server's, or one whose row a lost
   *   or old database no longer has) is quarantined: kept with its disk, stopped, and logged.
   * - An empty database while the engine holds VMs or snapshots refuses to start (unless
   *   `startWithUnowned`): that is a lost server.db, and serving would hide tenants' VMs.
   * VMs the engine recovered as stopped but that were meant to run are marked suspended, so the
   * next request restarts them.
   */
  async reconcile(): Promise<{ deleted: string[]; quarantined: string[] }> {
    const all = await this.engine.listVms();
    // The warm pool's VMs were never handed out: they are the pool's to adopt or delete. Builder
    // VMs are the builds' (Builds.recover ran first and deleted them).
    const poolVms = all.filter((v) => isPoolOwner(v.owner));
    const engineVms = all.filter((v) => !isPoolOwner(v.owner) && !isBuildOwner(v.owner));
    if (this.pool) await this.pool.adopt(poolVms);
    else for (const vm of poolVms) await this.engine.deleteVm(vm.id).catch((err: unknown) => this.log.error({ err, vmId: vm.id }, "could not delete a warm pool VM"));
    const engineSnaps = await this.engine.listSnapshots();
    const vmRows = new Map(this.rows.allVms().map((r) => [r.id, r]));
    const snapRows = new Set(this.rows.allSnapshotIds());
    if (this.rows.isEmpty() && (engineVms.length > 0 || engineSnaps.length > 0) && !this.opts.startWithUnowned) {
      throw new Error(
        `the server database is empty, but the engine holds ${engineVms.length} VM(s) and ${engineSnaps.length} snapshot(s) that it would no longer serve. ` +
          `If server.db was lost or replaced, stop and restore it from a backup. To start anyway, keeping them quarantined (disks kept, reachable by no account), set ${START_WITH_UNOWNED_ENV}=1.`,
      );
    }
    const intents = this.rows.intentTokens();
    const isGarbage = (owner: string | undefined) => {
      const o = parseOwner(owner);
      return o !== undefined && intents.has(o.token);
    };
    const deleted: string[] = [];
    const quarantined: string[] = [];

    for (const [id, r] of vmRows) {
      const vm = engineVms.find((v) => v.id === id);
      if (!vm) this.rows.deleteVm(id);
      else if (vm.state === "stopped" && r.desired === "running") this.rows.setDesired(id, "suspended");
    }
    for (const vm of engineVms) {
      if (vmRows.has(vm.id)) continue;
      if (isGarbage(vm.owner)) {
        this.log.warn({ vmId: vm.id, owner: vm.owner }, "deleting an engine VM made for a create that never recorded it");
        await this.engine.deleteVm(vm.id).then(
          () => deleted.push(vm.id),
          (err: unknown) => this.log.error({ err, vmId: vm.id }, "could not delete an unrecorded VM"),
        );
        continue;
      }
      quarantined.push(vm.id);
      this.log.warn({ vmId: vm.id, owner: vm.owner ?? null, state: vm.state }, "quarantined: an engine VM no row explains is kept (disk intact, stopped) and served to no account");
      if (vm.state === "running") await this.engine.stopVm(vm.id).catch((err: unknown) => this.log.error({ err, vmId: vm.id }, "could not stop a quarantined VM"));
    }

    const engineSnapIds = new Set(engineSnaps.map((s) => s.id));
    for (const id of snapRows) if (!engineSnapIds.has(id)) this.rows.deleteSnapshot(id);
    for (const snap of engineSnaps) {
      if (snapRows.has(snap.id)) continue;
      if (isGarbage(snap.owner)) {
        this.log.warn({ snapshotId: snap.id }, "deleting an engine snapshot made for a request that never recorded it");
        await this.engine.deleteSnapshot(snap.id).then(
          () => deleted.push(snap.id),
          (err: unknown) => this.log.error({ err, snapshotId: snap.id }, "could not delete an unrecorded snapshot"),
        );
        continue;
      }
      quarantined.push(snap.id);
      this.log.warn({ snapshotId: snap.id, owner: snap.owner ?? null }, "quarantined: an engine snapshot no row explains is kept and served to no account");
    }
    // Every intent is settled now: its VM or snapshot was recorded, deleted, or never made.
    for (const token of intents) this.rows.endIntent(token);
    return { deleted, quarantined };
  }

  /**
   * After the files (a `bash` service's script is one): `services` add (or replace) services, and
   * each of `patchedServices` changes the fields it gives of a service, the one `services` names
   * or else the VM's own (from its snapshot; neither is SERVICE_NOT_FOUND). The enabled ones are
   * started (a patched one that runs is restarted, or stopped if the patch disables it), and the
   * create answers once they are up (a oneshot: once it ran), or after the agent's settle wait.
   */
  async #installServices(id: string, services: ServiceSpec[], patches: SystemdPatchedService[]): Promise<void> {
    const defined = new Map(services.map((s) => [s.name, s]));
    for (const patch of patches) {
      const name = serviceId(patch.name);
      defined.set(name, patchServiceSpec(defined.get(name) ?? (await this.engine.guest.serviceSpec(id, name)), patch));
    }
    if (defined.size > 0) await this.engine.guest.serviceDefine(id, [...defined.values()], { replace: true, start: true });
  }

  /** A create's domains, checked before anything is made: valid, allowed, and not another account's. */
  #checkDomains(account: Account, entries: NonNullable<CreateVmRequest["domains"]>): DomainMapping[] {
    if (entries.length === 0) return [];
    if (!this.opts.domains) throw new ApiError("CREATE_VM_BAD_REQUEST", "domains are not enabled on this server");
    const domains = checkDomains(entries, this.opts.domains);
    this.rows.domains.checkFree(account, domains);
    return domains;
  }

  /** Groups first (users may name them), then users, then files — all through the guest as root. */
  async #provision(id: string, groups: GroupSpec[], users: UserSpec[], files: NonNullable<CreateVmRequest["additionalFiles"]>): Promise<void> {
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

/** The `groupadd` command line of a group spec (builds run it too). */
export function groupadd(g: GroupSpec): string {
  return ["groupadd", ...(g.gid !== undefined ? ["-g", String(g.gid)] : []), ...(g.system ? ["-r"] : []), shq(g.name)].join(" ");
}

/** The `useradd` command line of a user spec (builds run it too). */
export function useradd(u: UserSpec): string {
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

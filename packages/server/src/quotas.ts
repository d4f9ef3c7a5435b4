/**
 * Admission control and per-account quotas.
 *
 * - Sizing: each VM's memory, vCPUs and disk against a per-VM maximum (MEM_OVER_PLAN_LIMIT,
 *   VCPU_OVER_PLAN_LIMIT, ROOTFS_OVER_PLAN_LIMIT; 403), each with `reason` VM_MEMORY, VM_VCPUS or
 *   VM_DISK.
 * - Host capacity: the memory and CPUs of every VM the engine runs (any account's, and engine VMs
 *   no account owns), plus the admissions in flight, against the host's capacity times an
 *   overcommit ratio (SERVICE_UNAVAILABLE 503, retryable, `reason: HOST_MEMORY | HOST_CPU`).
 * - Per account: VMs, running VMs (VM_LIMIT_EXCEEDED), snapshots and snapshot bytes
 *   (SNAPSHOT_LIMIT_EXCEEDED), concurrent execs (SERVICE_UNAVAILABLE with status 429) and
 *   PTY connections (SESSION_CAP_REACHED 429), each with a `reason` naming the limit.
 *
 * Every code is one the official client knows, so a refused create throws at once instead of
 * being resent. Counting is race-free: an admission reads the engine (async), then checks and
 * records its reservation in one synchronous step, so two concurrent creates at a limit of 1
 * cannot both pass. A reservation lives until the caller's rows show the new VM or snapshot
 * (or the engine call failed); `release()` is idempotent. Until then a VM may be counted twice
 * (engine and reservation): admission errs on the side of refusing.
 * @module
 */
import os from "node:os";
import type { Engine, VmInfo, VmLimits, VmState } from "@capsule/engine";
import { ApiError } from "./errors.js";
import type { Account } from "./keys.js";
import type { Rows } from "./vms/rows.js";

/** Per-account caps; null = no cap. */
export interface AccountQuotas {
  /** VMs the account owns, in any state. */
  vms: number | null;
  /** VMs of the account the engine runs (creating, starting, running, stopping) or holds paused. */
  runningVms: number | null;
  /** Snapshots the account owns. */
  snapshots: number | null;
  /** Sum of the account's snapshot layer sizes, bytes; a snapshot is refused once it is reached. */
  snapshotBytes: number | null;
  /** exec-await calls and exec-stream sockets in flight at once. */
  concurrentExecs: number | null;
  /** PTY WebSocket connections open at once (new sessions and attaches). */
  ptys: number | null;
}

/** Per-VM maximums and the host's capacity. */
export interface AdmissionConfig {
  /** Most memory one VM may ask for, MiB. */
  memoryMb: number;
  /** Most vCPUs one VM may ask for. */
  vcpus: number;
  /** Largest disk one VM may ask for, MiB. */
  diskMb: number;
  /** Memory of all running VMs may reach hostMemoryMb times this. */
  memoryOvercommit: number;
  /** vCPUs of all running VMs may reach hostCpus times this. */
  cpuOvercommit: number;
  /** The host's memory, MiB. Default os.totalmem(). */
  hostMemoryMb: number;
  /** The host's CPUs. Default os.cpus().length. */
  hostCpus: number;
}

export const DEFAULT_QUOTAS: AccountQuotas = Object.freeze({
  vms: 50,
  runningVms: 20,
  snapshots: 100,
  snapshotBytes: 50 * 1024 ** 3,
  concurrentExecs: 32,
  ptys: 16,
});

/** Defaults from this host: per VM at most 16 GiB (or the host's memory), every host CPU, 64 GiB of disk. */
export function defaultAdmission(): AdmissionConfig {
  const hostMemoryMb = Math.floor(os.totalmem() / (1024 * 1024));
  const hostCpus = Math.max(1, os.cpus().length);
  return { memoryMb: Math.min(16 * 1024, hostMemoryMb), vcpus: hostCpus, diskMb: 64 * 1024, memoryOvercommit: 2, cpuOvercommit: 16, hostMemoryMb, hostCpus };
}

/** Engine states in which a VM holds (or is about to hold) host memory and CPU; a paused VM keeps its memory. */
const ACTIVE: ReadonlySet<VmState> = new Set<VmState>(["creating", "starting", "running", "stopping", "paused"]);

export function isActive(state: VmState): boolean {
  return ACTIVE.has(state);
}

// ---------------------------------------------------------------- pure checks

/** The per-VM maximums; the first one broken, or undefined. */
export function checkSizing(l: Pick<VmLimits, "memoryMb" | "cpus" | "diskMb">, a: Pick<AdmissionConfig, "memoryMb" | "vcpus" | "diskMb">): ApiError | undefined {
  if (l.memoryMb > a.memoryMb) {
    return new ApiError("MEM_OVER_PLAN_LIMIT", `memory ${l.memoryMb} MiB exceeds this server's maximum of ${a.memoryMb} MiB per VM; ask for at most memSizeGb ${round(a.memoryMb / 1024)}`, undefined, { reason: "VM_MEMORY" });
  }
  if (l.cpus > a.vcpus) {
    return new ApiError("VCPU_OVER_PLAN_LIMIT", `vcpuCount ${l.cpus} exceeds this server's maximum of ${a.vcpus} per VM; ask for at most vcpuCount ${a.vcpus}`, undefined, { reason: "VM_VCPUS" });
  }
  if (l.diskMb > a.diskMb) {
    return new ApiError("ROOTFS_OVER_PLAN_LIMIT", `disk ${l.diskMb} MiB exceeds this server's maximum of ${a.diskMb} MiB per VM; ask for at most rootfsSizeGb ${round(a.diskMb / 1024)}`, undefined, { reason: "VM_DISK" });
  }
  return undefined;
}

export interface Usage {
  memoryMb: number;
  cpus: number;
}

/** Host capacity with overcommit: `used` plus `adding` must fit; else a retryable 503. */
export function checkHost(used: Usage, adding: Usage, a: Pick<AdmissionConfig, "hostMemoryMb" | "hostCpus" | "memoryOvercommit" | "cpuOvercommit">): ApiError | undefined {
  const memCap = Math.floor(a.hostMemoryMb * a.memoryOvercommit);
  const cpuCap = a.hostCpus * a.cpuOvercommit;
  if (used.memoryMb + adding.memoryMb > memCap) {
    return new ApiError("SERVICE_UNAVAILABLE", `the host is out of memory for VMs: running VMs use ${used.memoryMb} MiB of ${memCap} MiB (host ${a.hostMemoryMb} MiB x overcommit ${a.memoryOvercommit}) and this needs ${adding.memoryMb} MiB more; retry later, stop VMs, or ask for less memory`, undefined, { reason: "HOST_MEMORY" });
  }
  if (used.cpus + adding.cpus > cpuCap) {
    return new ApiError("SERVICE_UNAVAILABLE", `the host is out of CPU for VMs: running VMs use ${round(used.cpus)} vCPUs of ${round(cpuCap)} (host ${a.hostCpus} x overcommit ${a.cpuOvercommit}) and this needs ${round(adding.cpus)} more; retry later, stop VMs, or ask for fewer vCPUs`, undefined, { reason: "HOST_CPU" });
  }
  return undefined;
}

/** What each account limit answers when reached. */
const LIMITS = {
  vms: { code: "VM_LIMIT_EXCEEDED", reason: "ACCOUNT_VMS", what: "VMs", fix: "delete VMs you no longer need" },
  runningVms: { code: "VM_LIMIT_EXCEEDED", reason: "ACCOUNT_RUNNING_VMS", what: "running VMs", fix: "stop or delete VMs you no longer need" },
  snapshots: { code: "SNAPSHOT_LIMIT_EXCEEDED", reason: "ACCOUNT_SNAPSHOTS", what: "snapshots", fix: "delete snapshots you no longer need" },
  snapshotBytes: { code: "SNAPSHOT_LIMIT_EXCEEDED", reason: "ACCOUNT_SNAPSHOT_BYTES", what: "snapshot bytes", fix: "delete snapshots you no longer need" },
  concurrentExecs: { code: "SERVICE_UNAVAILABLE", reason: "EXEC_CONCURRENCY", what: "concurrent execs", fix: "wait for running execs to finish and retry" },
  ptys: { code: "SESSION_CAP_REACHED", reason: "PTY_CONCURRENCY", what: "open terminal connections", fix: "close terminal connections you no longer need" },
} as const satisfies Record<keyof AccountQuotas, { code: ApiError["code"]; reason: string; what: string; fix: string }>;

/**
 * An account limit: `current` in use plus `adding` must not exceed `limit` (null: no limit). For
 * snapshot bytes, whose new size is unknown beforehand, pass adding 0 and `reached` semantics:
 * refused once current >= limit.
 */
export function checkAccount(kind: keyof AccountQuotas, current: number, adding: number, limit: number | null): ApiError | undefined {
  if (limit === null) return undefined;
  const over = kind === "snapshotBytes" ? current >= limit : current + adding > limit;
  if (!over) return undefined;
  const l = LIMITS[kind];
  const status = kind === "concurrentExecs" ? 429 : undefined;
  return new ApiError(l.code, `account limit reached: at most ${limit} ${l.what}, you have ${current}${adding > 1 ? ` and asked for ${adding} more` : ""}; ${l.fix}`, status, { reason: l.reason });
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

// ---------------------------------------------------------------- the live counters

/** One admission's hold on the counters; `release()` is idempotent. */
export interface QuotaTicket {
  release(): void;
}

interface Reservation {
  accountId: string;
  vms: number;
  running: number;
  memoryMb: number;
  cpus: number;
  snapshots: number;
}

export interface QuotaOptions {
  quotas: AccountQuotas;
  admission: AdmissionConfig;
}

export class Quotas {
  readonly #pending = new Set<Reservation>();
  readonly #execs = new Map<string, number>();
  readonly #ptys = new Map<string, number>();

  constructor(
    private readonly engine: Engine,
    private readonly rows: Rows,
    readonly opts: QuotaOptions,
  ) {}

  /** Engine defaults filled in for the fields a create leaves out. */
  fullLimits(partial: Partial<VmLimits>): VmLimits {
    return { ...this.engine.options.limits, ...partial };
  }

  /** Per-VM sizing only (synchronous, before anything is read or made). */
  checkSizing(limits: VmLimits): void {
    const err = checkSizing(limits, this.opts.admission);
    if (err) throw err;
  }

  /**
   * Admits `count` VMs of `limits` that will run: new ones (create, fork: `newVms`) or an existing
   * one that boots (start, wake). Throws the limit's ApiError; else the reservation holds until
   * released (after the rows show the VMs, or after the engine call failed). `host: false` skips
   * the host's capacity, for a warm pool VM that already runs (and is counted) becoming a tenant's.
   */
  async admitVms(account: Pick<Account, "id">, limits: VmLimits, count: number, newVms: boolean, opts: { host?: boolean } = {}): Promise<QuotaTicket> {
    this.checkSizing(limits);
    const engineVms = await this.engine.listVms();
    // Synchronous from here to the reservation: no other admission interleaves.
    const used = this.#hostUsage(engineVms);
    let pendingVms = 0;
    let pendingRunning = 0;
    for (const r of this.#pending) {
      if (r.accountId !== account.id) continue;
      pendingVms += r.vms;
      pendingRunning += r.running;
    }
    const byId = new Map<string, VmInfo>(engineVms.map((v) => [v.id, v]));
    const owned = this.rows.vmsOf(account);
    const running = owned.filter((r) => {
      const v = byId.get(r.id);
      return v !== undefined && isActive(v.state);
    }).length;
    const q = this.opts.quotas;
    const adding = opts.host === false ? { memoryMb: 0, cpus: 0 } : { memoryMb: limits.memoryMb * count, cpus: limits.cpus * count };
    const err =
      (newVms ? checkAccount("vms", owned.length + pendingVms, count, q.vms) : undefined) ??
      checkAccount("runningVms", running + pendingRunning, count, q.runningVms) ??
      checkHost(used, adding, this.opts.admission);
    if (err) throw err;
    return this.#reserve({ accountId: account.id, vms: newVms ? count : 0, running: count, ...adding, snapshots: 0 });
  }

  /** Admits one VM no account owns (the warm pool's) against the host's capacity only. */
  async admitHost(limits: VmLimits): Promise<QuotaTicket> {
    const used = this.#hostUsage(await this.engine.listVms());
    const adding = { memoryMb: limits.memoryMb, cpus: limits.cpus };
    const err = checkHost(used, adding, this.opts.admission);
    if (err) throw err;
    return this.#reserve({ accountId: "", vms: 0, running: 0, ...adding, snapshots: 0 });
  }

  /** Memory and CPUs of every VM the engine runs, plus the admissions in flight. */
  #hostUsage(engineVms: VmInfo[]): Usage {
    const used: Usage = { memoryMb: 0, cpus: 0 };
    for (const v of engineVms) {
      if (!isActive(v.state)) continue;
      used.memoryMb += v.limits.memoryMb;
      used.cpus += v.limits.cpus;
    }
    for (const r of this.#pending) {
      used.memoryMb += r.memoryMb;
      used.cpus += r.cpus;
    }
    return used;
  }

  /** Admits a VM's boot unless the engine already runs it (then nothing is reserved). */
  async admitBoot(account: Pick<Account, "id">, vmId: string): Promise<QuotaTicket> {
    const vm = await this.engine.getVm(vmId).catch(() => undefined);
    if (!vm || isActive(vm.state)) return NO_TICKET; // the engine answers for a missing VM itself
    return this.admitVms(account, vm.limits, 1, false);
  }

  /** Admits one snapshot of the account (count, then bytes already used). */
  async admitSnapshot(account: Pick<Account, "id">): Promise<QuotaTicket> {
    const q = this.opts.quotas;
    const snaps = q.snapshotBytes === null ? [] : await this.engine.listSnapshots();
    const owned = this.rows.snapshotsOf(account);
    const mine = new Set(owned.map((s) => s.id));
    const bytes = snaps.reduce((n, s) => n + (mine.has(s.id) ? s.sizeBytes : 0), 0);
    let pending = 0;
    for (const r of this.#pending) if (r.accountId === account.id) pending += r.snapshots;
    const err = checkAccount("snapshots", owned.length + pending, 1, q.snapshots) ?? checkAccount("snapshotBytes", bytes, 0, q.snapshotBytes);
    if (err) throw err;
    return this.#reserve({ accountId: account.id, vms: 0, running: 0, memoryMb: 0, cpus: 0, snapshots: 1 });
  }

  /** One exec (exec-await or exec-stream) of the account; 429 over the cap. */
  acquireExec(account: Pick<Account, "id">): QuotaTicket {
    return this.#acquire(this.#execs, "concurrentExecs", account);
  }

  /** One PTY connection of the account; 429 SESSION_CAP_REACHED over the cap. */
  acquirePty(account: Pick<Account, "id">): QuotaTicket {
    return this.#acquire(this.#ptys, "ptys", account);
  }

  /** exec-await calls and exec-stream sockets in flight, every account's. */
  execsInFlight(): number {
    let n = 0;
    for (const c of this.#execs.values()) n += c;
    return n;
  }

  /** In-flight counts, for tests and diagnostics. */
  inFlight(account: Pick<Account, "id">): { execs: number; ptys: number; reservations: number } {
    let reservations = 0;
    for (const r of this.#pending) if (r.accountId === account.id) reservations++;
    return { execs: this.#execs.get(account.id) ?? 0, ptys: this.#ptys.get(account.id) ?? 0, reservations };
  }

  #acquire(counts: Map<string, number>, kind: "concurrentExecs" | "ptys", account: Pick<Account, "id">): QuotaTicket {
    const current = counts.get(account.id) ?? 0;
    const err = checkAccount(kind, current, 1, this.opts.quotas[kind]);
    if (err) throw err;
    counts.set(account.id, current + 1);
    return once(() => {
      const n = (counts.get(account.id) ?? 1) - 1;
      if (n <= 0) counts.delete(account.id);
      else counts.set(account.id, n);
    });
  }

  #reserve(r: Reservation): QuotaTicket {
    this.#pending.add(r);
    return once(() => this.#pending.delete(r));
  }
}

const NO_TICKET: QuotaTicket = { release: () => undefined };

function once(fn: () => void): QuotaTicket {
  let done = false;
  return {
    release: () => {
      if (done) return;
      done = true;
      fn();
    },
  };
}

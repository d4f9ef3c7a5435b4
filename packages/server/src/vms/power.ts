/**
 * Power state of VMs: wake (boot a suspended VM; concurrent callers share one boot), start,
 * stop/suspend, and the engine readings the idle monitor needs. `desired` (rows.ts) is what the
 * owner asked for; it is written before the engine acts, so whoever reads the row afterwards
 * sees the newest intent:
 *
 * - wake writes `running` first, then boots (restoring the old value if the boot fails);
 * - suspend/stop write `suspended`/`stopped` first, then stop the sandbox;
 * - pause (/v5) writes `suspended` first, then pauses the sandbox with its memory kept: like a
 *   suspended VM it wakes on use (and on start), and the wake resumes it where it was.
 *
 * The engine serialises a VM's start and stop, so a stop that comes during a wake runs after it,
 * and a wake that comes during a stop boots the VM again once it is down.
 * @module
 */
import type { Engine } from "@capsule/engine";
import type { Logger } from "pino";
import type { ActivityTracker } from "../activity.js";
import { ApiError, toApiError } from "../errors.js";
import type { Account } from "../keys.js";
import type { Quotas } from "../quotas.js";
import type { Rows, VmRow } from "./rows.js";

export class Power {
  readonly #waking = new Map<string, Promise<void>>();

  constructor(
    private readonly engine: Engine,
    private readonly rows: Rows,
    private readonly activity: ActivityTracker,
    private readonly log: Logger,
    /** Admission of boots; absent (unit tests of other parts): boots are not checked. */
    private readonly quotas?: Quotas,
  ) {}

  /** Boots the VM unless it runs; callers during a boot share it. Throws ApiErrors. */
  wake(row: VmRow): Promise<void> {
    const inFlight = this.#waking.get(row.id);
    if (inFlight) return inFlight;
    // #boot writes `desired` before its first await, in this same tick as the map entry.
    const boot = this.#boot(row).finally(() => this.#waking.delete(row.id));
    this.#waking.set(row.id, boot);
    return boot;
  }

  /** True while a wake of the VM is in flight (its row already says `running`). */
  isWaking(id: string): boolean {
    return this.#waking.has(id);
  }

  async #boot(row: VmRow): Promise<void> {
    this.rows.setDesired(row.id, "running");
    let ticket: { release(): void } | undefined;
    try {
      // A boot takes host memory and CPU and a running-VM slot of the owner (none if it runs already).
      ticket = await this.quotas?.admitBoot({ id: row.account_id }, row.id);
      await this.engine.startVm(row.id);
    } catch (err) {
      this.rows.setDesiredIf(row.id, "running", row.desired);
      throw toApiError(err);
    } finally {
      ticket?.release();
    }
    this.activity.touch(row.id);
    if (row.desired !== "running") this.log.info({ vmId: row.id }, "vm woken");
  }

  async start(account: Account, id: string, idleTimeoutSeconds?: number | null): Promise<void> {
    const row = this.rows.ownedVm(account, id);
    if (idleTimeoutSeconds !== undefined) this.rows.setIdleTimeout(row.id, idleTimeoutSeconds);
    await this.wake(row);
  }

  /**
   * Raises the VM's vCPUs and memory, within the per-VM maximums. They apply from its next start:
   * a running sandbox keeps the limits it started with (Engine.resizeVm).
   */
  async resize(account: Account, id: string, grow: { cpus?: number; memoryMb?: number }): Promise<void> {
    const row = this.rows.ownedVm(account, id);
    try {
      const { limits } = await this.engine.getVm(row.id);
      this.quotas?.checkSizing({ ...limits, ...grow });
      await this.engine.resizeVm(row.id, grow);
    } catch (err) {
      throw toApiError(err, "VALIDATION_ERROR");
    }
  }

  /** stop, kill and suspend all stop the sandbox (processes end, the disk stays); they differ in how it wakes. */
  async halt(account: Account, id: string, how: "stopped" | "suspended"): Promise<void> {
    const row = this.rows.ownedVm(account, id);
    await this.suspend(row.id, how);
  }

  /** Writes `desired` at once (before any await), then stops the sandbox. */
  async suspend(id: string, how: "stopped" | "suspended" = "suspended"): Promise<void> {
    this.rows.setDesired(id, how);
    try {
      await this.engine.stopVm(id);
    } catch (err) {
      throw toApiError(err);
    }
    this.log.info({ vmId: id, how }, "vm halted");
  }

  /**
   * Pauses the VM with its memory kept (/v5 `pause`); it keeps its host memory and its place in
   * the account's running VMs (quotas.ts counts a paused VM as active). The first call that needs
   * its guest, or a start, resumes it. Pausing a paused VM does nothing; a stopped (or
   * idle-suspended) one has no processes to keep: VM_NOT_RUNNING.
   */
  async pause(account: Account, id: string): Promise<void> {
    const row = this.rows.ownedVm(account, id);
    await this.#waking.get(row.id)?.catch(() => undefined); // a wake in flight decides first
    try {
      const { state } = await this.engine.getVm(row.id);
      if (state === "paused") return;
      if (state !== "running") throw new ApiError("VM_NOT_RUNNING", `VM ${row.id} is not running (${state}); start it first`);
      this.rows.setDesired(row.id, "suspended");
      await this.engine.pauseVm(row.id);
    } catch (err) {
      this.rows.setDesiredIf(row.id, "suspended", row.desired);
      throw toApiError(err);
    }
    this.log.info({ vmId: row.id }, "vm paused");
  }

  /** Whether the engine has the VM running; undefined when it has no such VM. */
  async isRunning(id: string): Promise<boolean | undefined> {
    return this.engine.getVm(id).then(
      (v) => v.state === "running",
      () => undefined,
    );
  }

  /** Bytes the VM sent and received so far; undefined when unknown. */
  async netBytes(id: string): Promise<number | undefined> {
    return this.engine.netStats(id).then(
      (n) => n.rxBytes + n.txBytes,
      () => undefined,
    );
  }
}

/**
 * Suspends VMs that have been idle for their `idleTimeoutSeconds`. Idle means: no request for the
 * VM in flight, no PTY or exec stream attached (ActivityTracker), and no more than
 * `activityThresholdBytes` of network traffic on the VM's veth per check. A suspended VM wakes on
 * its next request (the guest gateway).
 *
 * The last busy check and the suspend's first step (writing `desired = suspended`) run in one
 * tick, with nothing awaited between them; the gateway's ownership check and hold are one tick
 * too, so a request either holds the VM before the monitor looks or sees it marked suspended and
 * wakes it again.
 * @module
 */
import type { Logger } from "pino";
import type { VmService } from "./vm-service.js";
import type { IdleSetting } from "./vms/rows.js";

export class IdleMonitor {
  readonly #startedAt = Date.now();
  readonly #bytes = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #running = false;

  constructor(
    private readonly svc: VmService,
    private readonly log: Logger,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    this.#timer = setInterval(() => void this.tick(), this.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #idle(vm: IdleSetting): boolean {
    const { activity } = this.svc;
    return !activity.isBusy(vm.id) && activity.idleMs(vm.id, this.#startedAt) >= vm.idleTimeoutSeconds * 1000;
  }

  /** One check of every VM with an idle timeout; overlapping ticks are skipped. */
  async tick(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      const { rows, power, activity } = this.svc;
      for (const vm of rows.idleSettings()) {
        const bytes = await power.netBytes(vm.id);
        if (bytes !== undefined) {
          const before = this.#bytes.get(vm.id);
          this.#bytes.set(vm.id, bytes);
          if (before !== undefined && bytes - before > vm.activityThresholdBytes) activity.touch(vm.id);
        }
        if (!this.#idle(vm)) continue;
        if ((await power.isRunning(vm.id)) !== true) continue;
        if (!this.#idle(vm)) continue; // a request came while the engine was asked
        this.log.info({ vmId: vm.id, idleTimeoutSeconds: vm.idleTimeoutSeconds }, "suspending idle VM");
        this.#bytes.delete(vm.id);
        await power.suspend(vm.id, "suspended").catch((err: unknown) => this.log.warn({ err, vmId: vm.id }, "could not suspend idle VM"));
      }
    } finally {
      this.#running = false;
    }
  }
}

/**
 * Suspends VMs that have been idle for their `idleTimeoutSeconds`. Idle means: no request for the
 * VM in flight, no PTY or exec stream attached (ActivityTracker), and no more than
 * `activityThresholdBytes` of network traffic on the VM's veth per check. A suspended VM wakes on
 * its next request (VmService.ensureRunning).
 * @module
 */
import type { Logger } from "pino";
import type { VmService } from "./vm-service.js";

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

  /** One check of every VM with an idle timeout; overlapping ticks are skipped. */
  async tick(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      for (const vm of this.svc.idleSettings()) {
        const bytes = await this.svc.engine.netStats(vm.id).then((n) => n.rxBytes + n.txBytes, () => undefined);
        if (bytes !== undefined) {
          const before = this.#bytes.get(vm.id);
          this.#bytes.set(vm.id, bytes);
          if (before !== undefined && bytes - before > vm.activityThresholdBytes) this.svc.activity.touch(vm.id);
        }
        if (this.svc.activity.isBusy(vm.id) || this.svc.activity.idleMs(vm.id, this.#startedAt) < vm.idleTimeoutSeconds * 1000) continue;
        const state = await this.svc.engine.getVm(vm.id).then((v) => v.state, () => undefined);
        if (state !== "running") continue;
        this.log.info({ vmId: vm.id, idleTimeoutSeconds: vm.idleTimeoutSeconds }, "suspending idle VM");
        this.#bytes.delete(vm.id);
        await this.svc.suspendById(vm.id, "suspended").catch((err: unknown) => this.log.warn({ err, vmId: vm.id }, "could not suspend idle VM"));
      }
    } finally {
      this.#running = false;
    }
  }
}

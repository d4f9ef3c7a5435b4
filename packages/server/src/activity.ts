/**
 * Per-VM activity for the idle timer: requests in flight, attached PTY / exec streams, and the
 * time of the last activity. A VM is busy while anything is in flight or attached; idle time
 * counts from the moment the last of them ended (or from the last network activity, which the
 * idle monitor reports through `touch`).
 * @module
 */
export class ActivityTracker {
  readonly #busy = new Map<string, number>();
  readonly #last = new Map<string, number>();

  /** Marks the VM busy until the returned function is called (once; later calls do nothing). */
  hold(vmId: string): () => void {
    this.#busy.set(vmId, (this.#busy.get(vmId) ?? 0) + 1);
    this.touch(vmId);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.#busy.get(vmId) ?? 1) - 1;
      if (n <= 0) this.#busy.delete(vmId);
      else this.#busy.set(vmId, n);
      this.touch(vmId);
    };
  }

  touch(vmId: string): void {
    this.#last.set(vmId, Date.now());
  }

  isBusy(vmId: string): boolean {
    return (this.#busy.get(vmId) ?? 0) > 0;
  }

  /** Milliseconds since the last activity; a VM never seen counts from `since` (server start). */
  idleMs(vmId: string, since: number): number {
    return Date.now() - (this.#last.get(vmId) ?? since);
  }

  forget(vmId: string): void {
    this.#busy.delete(vmId);
    this.#last.delete(vmId);
  }
}

/**
 * Wall-clock milliseconds of the steps of one operation (a boot, a snapshot), for diagnostics and
 * the benchmark. Each {@link end} books the time since the previous one; {@link track} books a
 * step that runs beside them.
 */
export class PhaseTimer {
  readonly phases: Record<string, number> = {};
  #mark = performance.now();

  /** Ends the step that ran since the last call (or since construction) and books it as `name`. */
  end(name: string): void {
    const now = performance.now();
    this.phases[name] = (this.phases[name] ?? 0) + (now - this.#mark);
    this.#mark = now;
  }

  /** Books `work`, which runs beside the steps {@link end} books, from now until it settles. */
  async track<T>(name: string, work: Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      return await work;
    } finally {
      this.phases[name] = (this.phases[name] ?? 0) + (performance.now() - start);
    }
  }
}

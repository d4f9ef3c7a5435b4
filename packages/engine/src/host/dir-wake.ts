import { watch, type FSWatcher } from "node:fs";

/**
 * Wakes a wait when something changes in a directory (inotify), or after a fallback delay: the
 * host waits for a guest's socket this way, so it connects as the file appears instead of on
 * the next tick of a poll. The directory may be the guest's to write: however often it changes,
 * a wait resolves no sooner than `minGapMs` after the previous one ended, so a guest that floods
 * it with events costs the host a bounded rate of attempts. Without inotify (or without the
 * directory) every wait is the fallback delay. Call {@link close} on every path.
 */
export class DirWake {
  #watcher: FSWatcher | undefined;
  #changed = false;
  #wake: (() => void) | undefined;
  #lastEnd = 0;

  constructor(
    dir: string,
    private readonly minGapMs: number,
  ) {
    try {
      this.#watcher = watch(dir, { persistent: false }, () => {
        this.#changed = true;
        this.#wake?.();
      });
      this.#watcher.on("error", () => this.close());
    } catch {
      this.#watcher = undefined;
    }
  }

  /** Resolves at the directory's next change (or one since the last wait), or after `fallbackMs`. */
  async next(fallbackMs: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(fallback);
        this.#wake = undefined;
        resolve();
      };
      const fallback = setTimeout(done, fallbackMs);
      this.#wake = done;
      if (this.#changed) done();
    });
    // Timers round to whole ms and may fire a little early: wait until the gap has truly passed.
    for (let gap; (gap = this.#lastEnd + this.minGapMs - performance.now()) > 0; ) await new Promise((r) => setTimeout(r, Math.ceil(gap)));
    this.#changed = false;
    this.#lastEnd = performance.now();
  }

  close(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
    this.#wake?.();
  }
}

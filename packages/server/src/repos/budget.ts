/**
 * The mirrors' disk, as bookkeeping only (no I/O, so the unit test drives it with a fake clock
 * and sizes): each mirror's bytes, when it was last used and how many operations or builds hold
 * it. A mirror that is held is never chosen for eviction or collection; the others go least
 * recently used first when a fetch needs room under the total bound, and any of them unused for
 * longer than the idle time goes at the next sweep.
 * @module
 */

interface Entry {
  bytes: number;
  lastUsedMs: number;
  holds: number;
}

export class MirrorBudget {
  readonly #entries = new Map<string, Entry>();

  constructor(
    /** All mirrors together may take at most this many bytes. */
    readonly totalBytes: number,
    /** A mirror nobody used for this long is collected. */
    readonly unusedMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** A mirror found on disk at start-up. */
  add(name: string, bytes: number, lastUsedMs: number): void {
    this.#entries.set(name, { bytes, lastUsedMs, holds: 0 });
  }

  /** Holds `name` (marks it used now); the function releases the hold (and marks it used again). */
  hold(name: string): () => void {
    const e = this.#entries.get(name) ?? { bytes: 0, lastUsedMs: this.now(), holds: 0 };
    e.holds++;
    e.lastUsedMs = this.now();
    this.#entries.set(name, e);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      e.holds--;
      e.lastUsedMs = this.now();
      // A mirror that never came to be (its first fetch failed) leaves no entry.
      if (e.holds === 0 && e.bytes === 0 && this.#entries.get(name) === e) this.#entries.delete(name);
    };
  }

  bytesOf(name: string): number {
    return this.#entries.get(name)?.bytes ?? 0;
  }

  setBytes(name: string, bytes: number): void {
    const e = this.#entries.get(name);
    if (e) e.bytes = bytes;
  }

  /** Bytes of all mirrors. */
  used(): number {
    let total = 0;
    for (const e of this.#entries.values()) total += e.bytes;
    return total;
  }

  /**
   * What must go so that `name` may take `bytes`: the least recently used mirrors nobody holds,
   * forgotten here at once (the caller removes their dirs). Undefined, and nothing forgotten,
   * when even all of them would not make room.
   */
  makeRoom(name: string, bytes: number): string[] | undefined {
    let over = this.used() - this.bytesOf(name) + bytes - this.totalBytes;
    if (over <= 0) return [];
    const victims: string[] = [];
    const idle = [...this.#entries].filter(([n, e]) => n !== name && e.holds === 0).sort(([, a], [, b]) => a.lastUsedMs - b.lastUsedMs);
    for (const [n, e] of idle) {
      if (over <= 0) break;
      victims.push(n);
      over -= e.bytes;
    }
    if (over > 0) return undefined;
    for (const n of victims) this.#entries.delete(n);
    return victims;
  }

  /** Mirrors nobody holds and nobody used for `unusedMs`, forgotten here (the caller removes them). */
  expired(): string[] {
    const cutoff = this.now() - this.unusedMs;
    const names = [...this.#entries].filter(([, e]) => e.holds === 0 && e.lastUsedMs < cutoff).map(([n]) => n);
    for (const n of names) this.#entries.delete(n);
    return names;
  }
}

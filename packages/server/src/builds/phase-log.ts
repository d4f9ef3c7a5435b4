/**
 * A running phase's log as it grows, written to its row while the phase runs (so
 * `GET /v1/vms/builds/{id}/phases`, the CLI's progress and the console show it live) at most
 * once per {@link LIVE_LOG_FLUSH_MS}, and kept bounded: a VM that prints forever costs at most
 * twice the row's limit of memory and one row write a second.
 * @module
 */
import { PHASE_LOG_MAX_CHARS } from "./rows.js";

/** The least time between two writes of a running phase's log to its row. */
export const LIVE_LOG_FLUSH_MS = 1000;

export class PhaseLog {
  #text = "";
  /** Characters dropped from the front to keep the tail bounded. */
  #cut = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(
    private readonly write: (log: string) => void,
    private readonly everyMs = LIVE_LOG_FLUSH_MS,
  ) {}

  append(s: string): void {
    this.#text += s;
    // Trimmed only past twice the limit, so a stream of small chunks does not copy the tail each time.
    if (this.#text.length > 2 * PHASE_LOG_MAX_CHARS) {
      this.#cut += this.#text.length - PHASE_LOG_MAX_CHARS;
      this.#text = this.#text.slice(-PHASE_LOG_MAX_CHARS);
    }
    this.#schedule();
  }

  /** Replaces what is shown (a phase that reads its log whole, as the services' one). */
  set(s: string): void {
    this.#text = "";
    this.#cut = 0;
    this.append(s);
  }

  /** What the row shows now: the last {@link PHASE_LOG_MAX_CHARS}, with how much was cut. */
  text(): string {
    const over = this.#text.length - PHASE_LOG_MAX_CHARS;
    const cut = this.#cut + Math.max(0, over);
    return cut === 0 ? this.#text : `[… ${cut} chars cut]\n${over > 0 ? this.#text.slice(over) : this.#text}`;
  }

  /** No more writes: the phase's end writes its final log. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.write(this.text());
    }, this.everyMs);
  }
}

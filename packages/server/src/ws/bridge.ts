/**
 * Flow control between a client's WebSocket and a guest stream, both ways, and `Deferred`, which
 * holds a guest stream's events until its socket is bound.
 */
import type { WebSocket } from "ws";

/** Above this many bytes queued in the socket, the guest stream is paused. */
export const HIGH_WATER = 4 * 1024 * 1024;

/**
 * Client stdin the server holds for one socket (bytes queued towards the guest, not yet taken by
 * it) before it stops reading the client's socket; reading resumes below half of it. What is
 * held is this plus one frame (`maxPayload`) plus one socket read.
 */
export const STDIN_HIGH_WATER = 1024 * 1024;

export class Deferred {
  #ws: WebSocket | undefined;
  readonly #pending: Array<(ws: WebSocket) => void> = [];

  /** Runs `f` with the socket now, or once it is bound. */
  run(f: (ws: WebSocket) => void): void {
    if (this.#ws) f(this.#ws);
    else this.#pending.push(f);
  }

  bind(ws: WebSocket): void {
    this.#ws = ws;
    for (const f of this.#pending.splice(0)) f(ws);
  }
}

/**
 * Calls `pause` when the socket's send buffer is over the high-water mark and `resume` once it
 * drained; `ws` has no drain event of its own, so the buffer is polled while paused.
 */
export function flowControl(ws: WebSocket, pause: () => void, resume: () => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  return () => {
    if (timer || ws.bufferedAmount < HIGH_WATER) return;
    pause();
    timer = setInterval(() => {
      if (ws.readyState !== ws.OPEN || ws.bufferedAmount < HIGH_WATER / 2) {
        clearInterval(timer);
        timer = undefined;
        resume();
      }
    }, 20);
  };
}

/**
 * Stdin flow control: counts the bytes handed to the guest and not yet taken, stops reading the
 * client's socket above STDIN_HIGH_WATER and reads on below half of it. `taken(n)` reports
 * bytes the guest took; `release()` reads on for good (the process ended).
 */
export function stdinGate(ws: WebSocket): { queued: (n: number) => void; taken: (n: number) => void; release: () => void } {
  let pending = 0;
  let released = false;
  return {
    queued(n) {
      pending += n;
      if (!released && pending > STDIN_HIGH_WATER && !ws.isPaused) ws.pause();
    },
    taken(n) {
      pending = Math.max(0, pending - n);
      if (pending <= STDIN_HIGH_WATER / 2 && ws.isPaused) ws.resume();
    },
    release() {
      released = true;
      pending = 0;
      if (ws.isPaused) ws.resume();
    },
  };
}

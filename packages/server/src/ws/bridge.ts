/**
 * Holds a guest stream's events until its WebSocket exists. The guest side (PTY or process) is
 * opened before the HTTP upgrade, so failures still answer as HTTP errors; output that arrives
 * during the handshake is queued and replayed in order once the socket is bound.
 */
import type { WebSocket } from "ws";

/** Above this many bytes queued in the socket, the guest stream is paused. */
export const HIGH_WATER = 4 * 1024 * 1024;

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

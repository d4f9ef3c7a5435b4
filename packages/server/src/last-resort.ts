/**
 * The last line of defence of a long-running server process: an exception or rejection that
 * escaped every handler (a bug in some connection's callback, a library emitting `error` with no
 * listener) is logged with its stack and the process keeps serving the other tenants. Everything
 * that can be contained closer to its source is (agent connections, WebSockets, requests); this
 * catches what was missed, so one request or connection never takes the server down. Counted, so
 * `/metrics` and the log show that it happened.
 * @module
 */
import type { Logger } from "pino";

let installed = false;
let caught = 0;

/** How many escaped errors the guard has caught since start. */
export function lastResortCount(): number {
  return caught;
}

export function installLastResortGuard(log: Logger): void {
  if (installed) return;
  installed = true;
  process.on("uncaughtException", (err, origin) => {
    caught++;
    log.error({ err, origin }, "uncaught exception: contained by the last-resort guard; the server keeps serving");
  });
  process.on("unhandledRejection", (reason) => {
    caught++;
    log.error({ err: reason }, "unhandled rejection: contained by the last-resort guard; the server keeps serving");
  });
}

import type { RestartPolicy, ServiceResult } from "@capsule/agent-protocol";

/** systemd's defaults: RestartSec=100ms, StartLimitBurst=5 within StartLimitIntervalSec=10s. */
export const DEFAULT_RESTART_SEC = 0.1;
export const DEFAULT_START_LIMIT_BURST = 5;
export const DEFAULT_START_LIMIT_INTERVAL_SEC = 10;
/** However a policy is written, a crash loop restarts at most this often... */
export const MIN_RESTART_DELAY_MS = 100;
/** ...and at most once a second when the policy turns the start limit off (interval 0). */
export const UNLIMITED_RESTART_DELAY_MS = 1000;

/**
 * How a run ended: a command's exit, a signal, a time limit (a oneshot's run, a notify service's
 * READY=1), a missed watchdog ping, or no process at all.
 */
export type RunEnd = { kind: "exit"; code: number } | { kind: "signal"; signal: string } | { kind: "timeout" } | { kind: "watchdog" } | { kind: "resources" };

/** Signals systemd counts as a clean end (SuccessExitStatus's defaults). */
const CLEAN_SIGNALS = new Set(["SIGHUP", "SIGINT", "SIGTERM", "SIGPIPE"]);

export function runResult(end: RunEnd): ServiceResult {
  switch (end.kind) {
    case "exit":
      return end.code === 0 ? "success" : "exit-code";
    case "signal":
      return "signal";
    default:
      return end.kind;
  }
}

/** systemd's Restart= table, for a run that ended on its own (not stopped). */
export function shouldRestart(policy: RestartPolicy | undefined, end: RunEnd): boolean {
  const clean = (end.kind === "exit" && end.code === 0) || (end.kind === "signal" && CLEAN_SIGNALS.has(end.signal));
  switch (policy?.policy ?? "no") {
    case "always":
      return true;
    case "on-failure":
      return !clean;
    case "on-abnormal":
      return (end.kind === "signal" && !clean) || end.kind === "timeout" || end.kind === "watchdog";
    default:
      return false;
  }
}

export function restartDelayMs(policy: RestartPolicy | undefined): number {
  const ms = Math.max(MIN_RESTART_DELAY_MS, (policy?.restartSec ?? DEFAULT_RESTART_SEC) * 1000);
  return policy?.startLimitIntervalSec === 0 ? Math.max(ms, UNLIMITED_RESTART_DELAY_MS) : ms;
}

/** Counts starts: more than `burst` within the interval is refused (systemd's start-limit-hit). */
export class StartLimiter {
  readonly #burst: number;
  readonly #intervalMs: number;
  #starts: number[] = [];

  constructor(policy: RestartPolicy | undefined) {
    this.#burst = policy?.startLimitBurst ?? DEFAULT_START_LIMIT_BURST;
    this.#intervalMs = (policy?.startLimitIntervalSec ?? DEFAULT_START_LIMIT_INTERVAL_SEC) * 1000;
  }

  /** Records a start at `nowMs`; false when it is one too many. Interval 0: no limit. */
  allow(nowMs: number): boolean {
    if (this.#intervalMs === 0) return true;
    this.#starts = this.#starts.filter((t) => nowMs - t < this.#intervalMs);
    if (this.#starts.length >= this.#burst) return false;
    this.#starts.push(nowMs);
    return true;
  }

  reset(): void {
    this.#starts = [];
  }
}

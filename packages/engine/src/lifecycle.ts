import { EngineError, ErrorCode } from "./errors.js";

/**
 * VM lifecycle. These strings are stored on disk and shown by the API: never rename them.
 *
 * ```
 *  creating ──► running ──► stopping ──► stopped ──► starting ──► running
 *     │            │                        │            │
 *     └────────────┴──────► deleting ◄──────┴────────────┘
 *                            │   ▲
 *                            ▼   └──── lost ──► starting
 *                         deleted       ▲
 *                                       └── running, starting, stopping, stopped, paused
 *
 *  running ──pause──► paused ──start──► running        paused ──► stopping | deleting
 * ```
 * `paused`: the sandbox is frozen by its runtime (`runsc pause`) with its memory kept; `start`
 * resumes it where it was. It holds its host memory and network like a running VM, but its guest
 * cannot be reached (it answers nothing until resumed). A stop or delete of a paused VM tears the
 * sandbox down as it is.
 * `creating` and `starting` fall back on failure: a failed create is rolled back and deleted, a
 * failed start leaves the VM `stopped` with its disk intact.
 *
 * `lost`: recovery found the VM's guest misbehaving (its agent answered garbage, or nothing,
 * within the per-VM budget), stopped it and kept its disk; the record says why (`lostReason`).
 * A lost VM can be started again (on a fresh agent) or deleted. Recovery also moves VMs a crash
 * left in `starting`, `running` or `stopping` straight to `stopped`; that is not in this table,
 * which is for operations of a live engine. A `paused` VM stays paused across an engine restart
 * (recovery checks the runtime still has it paused).
 */
export type VmState = "creating" | "starting" | "running" | "stopping" | "stopped" | "paused" | "lost" | "deleting" | "deleted";

const transitions: Record<VmState, readonly VmState[]> = {
  creating: ["running", "deleting"],
  starting: ["running", "stopped", "lost", "deleting"],
  running: ["stopping", "paused", "lost", "deleting"],
  paused: ["running", "stopping", "lost", "deleting"],
  stopping: ["stopped", "lost", "deleting"],
  stopped: ["starting", "lost", "deleting"],
  lost: ["starting", "deleting"],
  deleting: ["deleted"],
  deleted: [],
};

export function canTransition(from: VmState, to: VmState): boolean {
  return transitions[from].includes(to);
}

export function assertTransition(id: string, from: VmState, to: VmState): void {
  if (!canTransition(from, to)) {
    throw new EngineError(ErrorCode.InvalidState, `VM ${id} is ${from}; it cannot become ${to}`);
  }
}

export function requireState(id: string, actual: VmState, action: string, allowed: readonly VmState[]): void {
  if (!allowed.includes(actual)) {
    throw new EngineError(
      ErrorCode.InvalidState,
      `cannot ${action} VM ${id}: it is ${actual} (needs ${allowed.join(" or ")})${actual === "stopped" || actual === "lost" || actual === "paused" ? "; start it first" : ""}`,
    );
  }
}

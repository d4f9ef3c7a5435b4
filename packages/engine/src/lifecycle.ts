import { EngineError, ErrorCode } from "./errors.js";

/**
 * VM lifecycle. These strings are stored on disk and shown by the API: never rename them.
 *
 * ```
 *  creating ──► running ──► stopping ──► stopped ──► starting ──► running
 *     │            │                        │            │
 *     └────────────┴──────► deleting ◄──────┴────────────┘
 *                              │
 *                              ▼
 *                           deleted
 * ```
 * `creating` and `starting` fall back on failure: a failed create is rolled back and deleted, a
 * failed start leaves the VM `stopped` with its disk intact.
 */
export type VmState = "creating" | "starting" | "running" | "stopping" | "stopped" | "deleting" | "deleted";

const transitions: Record<VmState, readonly VmState[]> = {
  creating: ["running", "deleting"],
  starting: ["running", "stopped", "deleting"],
  running: ["stopping", "deleting"],
  stopping: ["stopped", "deleting"],
  stopped: ["starting", "deleting"],
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
      `cannot ${action} VM ${id}: it is ${actual} (needs ${allowed.join(" or ")})${actual === "stopped" ? "; start it first" : ""}`,
    );
  }
}

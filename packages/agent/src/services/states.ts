import type { ServiceActiveState, ServiceSubState } from "@capsule/agent-protocol";

/** Where a service is in its life; each maps onto one of systemd's (activeState, subState) pairs. */
export type Phase = "inactive" | "activating" | "running" | "exited" | "auto-restart" | "stopping" | "failed";

const STATES: Record<Phase, { activeState: ServiceActiveState; subState: ServiceSubState }> = {
  inactive: { activeState: "inactive", subState: "dead" },
  activating: { activeState: "activating", subState: "start" },
  running: { activeState: "active", subState: "running" },
  exited: { activeState: "active", subState: "exited" },
  "auto-restart": { activeState: "activating", subState: "auto-restart" },
  stopping: { activeState: "deactivating", subState: "stop-sigterm" },
  failed: { activeState: "failed", subState: "failed" },
};

export function systemdStates(phase: Phase): { activeState: ServiceActiveState; subState: ServiceSubState } {
  return STATES[phase];
}

/** Phases a start waits for: the service is up, or it is clear it will not be. */
export function isSettled(phase: Phase): boolean {
  return phase === "running" || phase === "exited" || phase === "inactive" || phase === "failed";
}

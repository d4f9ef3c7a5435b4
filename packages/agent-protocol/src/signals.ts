import os from "node:os";

/**
 * The one signal table. `SIGNALS` holds the signals a host may send to a guest process group or
 * PTY session (exec `kill`, a PTY's `signal` control, the API's WebSocket controls), with their
 * Linux numbers. Every other signal (one that killed a process, say) is named through
 * {@link signalName} / {@link signalNumber}, which read the runtime's own table.
 */
export const SIGNALS = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 } as const;
export type SignalName = keyof typeof SIGNALS;
export const SIGNAL_NAMES = Object.keys(SIGNALS) as SignalName[];

export function isSignalName(value: unknown): value is SignalName {
  return typeof value === "string" && Object.hasOwn(SIGNALS, value);
}

/**
 * The table's signal a client named, in any case and with or without the `SIG` prefix
 * (`sigkill`, `SIGKILL`, `kill` and `Kill` are all SIGKILL: freestyle 0.2 sends lower case, 0.1
 * upper case); undefined for anything else.
 */
export function parseSignalName(text: unknown): SignalName | undefined {
  if (typeof text !== "string" || text.length > 16) return undefined;
  const upper = text.toUpperCase();
  const name = upper.startsWith("SIG") ? upper : `SIG${upper}`;
  return isSignalName(name) ? name : undefined;
}

const BY_NUMBER = new Map<number, NodeJS.Signals>(Object.entries(os.constants.signals).map(([name, num]) => [num, name as NodeJS.Signals]));

/** `SIGSEGV` for 11; undefined for a number that is no signal. */
export function signalName(num: number): NodeJS.Signals | undefined {
  return BY_NUMBER.get(num);
}

/** 11 for `SIGSEGV`; undefined for a name that is no signal. */
export function signalNumber(name: string): number | undefined {
  return Object.hasOwn(os.constants.signals, name) ? os.constants.signals[name as NodeJS.Signals] : undefined;
}

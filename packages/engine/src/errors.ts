/**
 * Every error the engine throws is an {@link EngineError} with a stable `code`. Callers (the API
 * server, tests) branch on `code`, never on message text. Messages say what to do about it.
 * @module
 */

export const ErrorCode = {
  VmNotFound: "VM_NOT_FOUND",
  SnapshotNotFound: "SNAPSHOT_NOT_FOUND",
  ImageNotFound: "IMAGE_NOT_FOUND",
  InvalidState: "VM_INVALID_STATE",
  InvalidArgument: "INVALID_ARGUMENT",
  HostNotReady: "HOST_NOT_READY",
  EngineLocked: "ENGINE_LOCKED",
  RuntimeFailed: "RUNTIME_FAILED",
  AgentUnavailable: "AGENT_UNAVAILABLE",
  AgentError: "AGENT_ERROR",
  /** The guest sent bytes that are not the agent protocol (bad frame, bad JSON, wrong shape or type, wrong version). */
  AgentProtocolError: "AGENT_PROTOCOL_ERROR",
  /** The guest did not answer, or stopped mid-frame, within its deadline. */
  AgentTimeout: "AGENT_TIMEOUT",
  /** The VM runs an agent of an older protocol (booted before an upgrade): restart it. */
  AgentOutdated: "AGENT_OUTDATED",
  ExecTimedOut: "EXEC_TIMED_OUT",
  NetworkExhausted: "NETWORK_EXHAUSTED",
  /** The operation cannot be done to this VM or snapshot on this engine at all (a memory snapshot of a runc VM, say); the message says why. */
  Unsupported: "UNSUPPORTED",
  Internal: "INTERNAL",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const brand = Symbol.for("capsule.engine.error");

export class EngineError extends Error {
  readonly code: string;
  /** For agent errors: the agent's own code (FILE_NOT_FOUND, USER_NOT_FOUND, ...). */
  readonly agentCode: string | undefined;

  constructor(code: ErrorCode, message: string, opts?: { cause?: unknown; agentCode?: string }) {
    super(message, opts?.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "EngineError";
    this.code = code;
    this.agentCode = opts?.agentCode;
    Object.defineProperty(this, brand, { value: true });
  }

  /** `instanceof` that also holds across duplicate copies of this package. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === "object" && value !== null && brand in value;
  }
}

export function isEngineError(err: unknown, code?: string): err is EngineError {
  return err instanceof EngineError && (code === undefined || err.code === code || err.agentCode === code);
}

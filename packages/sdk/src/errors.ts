/**
 * Typed errors. Every failure the SDK reports is a {@link CapsuleError} with a stable `code`:
 * one of the API's codes (the contract's registry, `@capsule/contract/errors`, documented in
 * docs/errors.md) for server answers, or one of the client-side codes below, which never travel
 * on the wire. Messages end with how to fix the problem.
 * @module
 */
import { API_ERROR_CODES, type ApiErrorCode } from "@capsule/contract/errors";

/** Codes the Capsule server answers with (`{code, message}` bodies): the contract's registry. */
export { API_ERROR_CODES, type ApiErrorCode };

/** Codes raised by the SDK itself, without a server answer. */
export const CLIENT_ERROR_CODES = [
  /** CAPSULE_API_URL / CAPSULE_API_KEY (or the options) are missing or invalid. */
  "CONFIG_MISSING",
  /** The server could not be reached (refused, reset, DNS, TLS). */
  "NETWORK_ERROR",
  /** The server answered something that is not the Capsule/Freestyle protocol. */
  "BAD_RESPONSE",
  /** A WebSocket (PTY or spawn) dropped before the remote process ended. */
  "CONNECTION_LOST",
  /** A call on a PTY handle that was detached or whose session ended. */
  "SESSION_CLOSED",
  /** `build.wait()` gave up before the build succeeded or failed. */
  "BUILD_TIMED_OUT",
] as const;

export type ClientErrorCode = (typeof CLIENT_ERROR_CODES)[number];
/** Every `code` a {@link CapsuleError} can carry. An unknown server code is passed through as is. */
export type ErrorCode = ApiErrorCode | ClientErrorCode;

/** A fix hint for every code: adding a code to the registry without one fails to compile. */
export const HINTS: Readonly<Record<ErrorCode, string>> = {
  UNAUTHORIZED: "check CAPSULE_API_KEY (or the apiKey option); create a key on the server host with `capsule keys create`",
  VM_NOT_FOUND: "check the VM id with `capsule vm list` (VMs of other accounts are invisible)",
  NOT_FOUND: "check the id and the server version",
  SNAPSHOT_NOT_FOUND: "check the snapshot id with `capsule snapshot list`",
  FILE_NOT_FOUND: "check the path: absolute, inside the VM, and readable by the user the call runs as",
  USER_NOT_FOUND: "create the Linux user first, e.g. vm.exec(\"useradd -m NAME\") or vms.create({ users: [{ name }] })",
  SESSION_NOT_FOUND: "list the VM's terminal sessions with vm.pty.list()",
  SERVICE_NOT_FOUND: "list the VM's services with vm.systemd.list()",
  SERVICE_ALREADY_EXISTS: "pick another service name, or delete the service first with vm.systemd.delete({ serviceId })",
  SESSION_USER_MISMATCH: "attach as the session's own user: vm.user({ username }).pty.attach(...)",
  INVALID_SESSION_ID: "use a session id from vm.pty.list() or the one open() returned",
  VM_NOT_RUNNING: "start the VM with vm.start() (or `capsule vm start ID`)",
  VM_LIMIT_EXCEEDED: "delete VMs you no longer need (`capsule vm list`, `capsule vm delete ID`)",
  SNAPSHOT_LIMIT_EXCEEDED: "delete snapshots you no longer need (`capsule snapshot list`, `capsule snapshot delete ID`)",
  MEM_OVER_PLAN_LIMIT: "ask for less memory (memSizeGb): the server caps it per VM",
  VCPU_OVER_PLAN_LIMIT: "ask for fewer vCPUs (vcpuCount): the server caps them per VM",
  ROOTFS_OVER_PLAN_LIMIT: "ask for a smaller disk (rootfsSizeGb): the server caps it per VM",
  EXEC_TIMED_OUT: "raise timeoutMs, or run long commands with vm.spawn()",
  DOMAIN_ALREADY_EXISTS: "pick another domain: that one belongs to another account",
  STILL_CREATING: "wait for the VM to finish starting and retry",
  SESSION_CAP_REACHED: "close terminal sessions you no longer need with vm.pty.close({ sessionId })",
  CREATE_VM_BAD_REQUEST: "fix the create options as the message says",
  FILES_BAD_REQUEST: "use an absolute path without '..' (a directory is read with readDir) and a byte range that starts inside the file",
  VALIDATION_ERROR: "fix the request as the message says",
  BAD_REQUEST: "fix the request as the message says",
  FORBIDDEN: "use a key of the account that owns the resource",
  VM_SETUP_FAILED: "read the failed phase's log (GET /v1/vms/builds/{id}/phases), fix the spec and ensure it again",
  INTERNAL_ERROR: "see the server's log (`capsule serve` prints it)",
  SERVICE_UNAVAILABLE: "retry in a moment",
  CONFIG_MISSING: "set the environment variable or pass the option to new Capsule({ apiUrl, apiKey })",
  NETWORK_ERROR: "is the Capsule server running at that address? Start it with `capsule serve` or scripts/start.sh",
  BAD_RESPONSE: "check that the URL points at a Capsule (or Freestyle v1) API server",
  CONNECTION_LOST: "the server or the VM went away; check it with `capsule vm get ID` and retry",
  SESSION_CLOSED: "attach a new handle with vm.pty.attach({ sessionId })",
  BUILD_TIMED_OUT: "wait longer (build.wait({ timeoutMs })), or read its phases with `capsule build show ID`",
};

/** Base class of every SDK error. */
export class CapsuleError extends Error {
  /** Stable, machine-readable code (see {@link ErrorCode}). */
  readonly code: ErrorCode | (string & {});
  /** HTTP status of the server's answer, when there was one. */
  readonly status: number | undefined;
  /** The server's whole JSON error body, when there was one (extra detail fields included). */
  readonly body: Record<string, unknown> | undefined;
  /** The server's (or the SDK's) message without the fix hint. */
  readonly detail: string;

  constructor(code: ErrorCode | (string & {}), detail: string, opts: { status?: number; body?: Record<string, unknown>; cause?: unknown } = {}) {
    const hint = Object.prototype.hasOwnProperty.call(HINTS, code) ? HINTS[code as ErrorCode] : undefined;
    super(hint ? `${detail} — ${hint}` : detail, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = "CapsuleError";
    this.code = code;
    this.status = opts.status;
    this.body = opts.body;
    this.detail = detail;
  }
}

/** VM_NOT_FOUND: no such VM for this account. */
export class VmNotFoundError extends CapsuleError {
  override readonly name = "VmNotFoundError";
}
/** SNAPSHOT_NOT_FOUND. */
export class SnapshotNotFoundError extends CapsuleError {
  override readonly name = "SnapshotNotFoundError";
}
/** FILE_NOT_FOUND: a path in the VM does not exist (for that user). */
export class FileNotFoundError extends CapsuleError {
  override readonly name = "FileNotFoundError";
}
/** USER_NOT_FOUND: the Linux user of a `vm.user()` handle does not exist in the VM. */
export class UserNotFoundError extends CapsuleError {
  override readonly name = "UserNotFoundError";
}
/** SESSION_NOT_FOUND / SESSION_USER_MISMATCH / INVALID_SESSION_ID: a PTY session problem. */
export class SessionError extends CapsuleError {
  override readonly name = "SessionError";
}
/** UNAUTHORIZED: missing, wrong or revoked API key. */
export class UnauthorizedError extends CapsuleError {
  override readonly name = "UnauthorizedError";
}
/** EXEC_TIMED_OUT: `exec` ran past its `timeoutMs`. */
export class ExecTimedOutError extends CapsuleError {
  override readonly name = "ExecTimedOutError";
}
/** Invalid input: BAD_REQUEST, VALIDATION_ERROR, CREATE_VM_BAD_REQUEST, FILES_BAD_REQUEST. */
export class ValidationError extends CapsuleError {
  override readonly name = "ValidationError";
}
/** VM_LIMIT_EXCEEDED / SNAPSHOT_LIMIT_EXCEEDED / MEM_OVER_PLAN_LIMIT / VCPU_OVER_PLAN_LIMIT / ROOTFS_OVER_PLAN_LIMIT / SESSION_CAP_REACHED: a limit of the server. */
export class LimitError extends CapsuleError {
  override readonly name = "LimitError";
}
/** CONFIG_MISSING: the client has no API URL or key. */
export class ConfigError extends CapsuleError {
  override readonly name = "ConfigError";
}
/** NETWORK_ERROR / CONNECTION_LOST / BAD_RESPONSE: the transport failed. */
export class ConnectionError extends CapsuleError {
  override readonly name = "ConnectionError";
}

type ErrorClass = new (code: string, detail: string, opts?: { status?: number; body?: Record<string, unknown>; cause?: unknown }) => CapsuleError;

const CLASSES: Partial<Record<ErrorCode, ErrorClass>> = {
  VM_NOT_FOUND: VmNotFoundError,
  SNAPSHOT_NOT_FOUND: SnapshotNotFoundError,
  FILE_NOT_FOUND: FileNotFoundError,
  USER_NOT_FOUND: UserNotFoundError,
  SESSION_NOT_FOUND: SessionError,
  SESSION_USER_MISMATCH: SessionError,
  INVALID_SESSION_ID: SessionError,
  SESSION_CLOSED: SessionError,
  UNAUTHORIZED: UnauthorizedError,
  EXEC_TIMED_OUT: ExecTimedOutError,
  BAD_REQUEST: ValidationError,
  VALIDATION_ERROR: ValidationError,
  CREATE_VM_BAD_REQUEST: ValidationError,
  FILES_BAD_REQUEST: ValidationError,
  VM_LIMIT_EXCEEDED: LimitError,
  SNAPSHOT_LIMIT_EXCEEDED: LimitError,
  MEM_OVER_PLAN_LIMIT: LimitError,
  VCPU_OVER_PLAN_LIMIT: LimitError,
  ROOTFS_OVER_PLAN_LIMIT: LimitError,
  SESSION_CAP_REACHED: LimitError,
  CONFIG_MISSING: ConfigError,
  NETWORK_ERROR: ConnectionError,
  CONNECTION_LOST: ConnectionError,
  BAD_RESPONSE: ConnectionError,
};

/** Builds the typed error for a code (the subclass when there is one). */
export function makeError(code: string, detail: string, opts: { status?: number; body?: Record<string, unknown>; cause?: unknown } = {}): CapsuleError {
  const Cls = CLASSES[code as ErrorCode] ?? CapsuleError;
  return new Cls(code, detail, opts);
}

/** Builds the error for a non-2xx answer from its status and body text. */
export function errorFromResponse(status: number, text: string, what: string): CapsuleError {
  let body: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === "object") body = parsed as Record<string, unknown>;
  } catch {
    /* not JSON */
  }
  if (body && typeof body.code === "string") {
    return makeError(body.code, typeof body.message === "string" ? body.message : `${what} failed with ${body.code}`, { status, body });
  }
  const snippet = text.length > 200 ? `${text.slice(0, 200)}…` : text;
  return makeError(status === 401 ? "UNAUTHORIZED" : "BAD_RESPONSE", `${what}: HTTP ${status}${snippet ? `: ${snippet}` : ""}`, { status, ...(body ? { body } : {}) });
}

/** True when `err` is a {@link CapsuleError}, optionally with the given code. */
export function isCapsuleError(err: unknown, code?: ErrorCode): err is CapsuleError {
  return err instanceof CapsuleError && (code === undefined || err.code === code);
}

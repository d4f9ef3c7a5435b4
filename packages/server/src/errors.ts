/**
 * The server's errors: `ApiError` (a registry code, a message and optional detail fields) and the
 * mapping from engine errors to API codes. The registry itself (codes, statuses, descriptions) is
 * the contract's, `@capsule/contract/errors`, shared with the SDK and documented in docs/errors.md.
 * @module
 */
import crypto from "node:crypto";
import { isEngineError } from "@capsule/engine";
import { API_ERRORS, type ApiErrorBody, type ApiErrorCode, type ApiErrorDetails } from "@capsule/contract/errors";

export { API_ERRORS, API_ERROR_CODES, isApiErrorCode, type ApiErrorCode } from "@capsule/contract/errors";

/** An error with a known code; thrown anywhere below a route and rendered by the app's onError. */
export class ApiError extends Error {
  constructor(
    readonly code: ApiErrorCode,
    message: string,
    /** Overrides the registry's status (e.g. 413 for a body over the limit, 501 for unsupported features). */
    readonly statusOverride?: number,
    /** Detail fields: only the contract's (`API_ERROR_DETAILS`), so docs and OpenAPI list them all. */
    readonly extra: ApiErrorDetails = {},
  ) {
    super(message);
    this.name = "ApiError";
  }

  get status(): number {
    return this.statusOverride ?? API_ERRORS[this.code].status;
  }

  /** `error` repeats the code because the OpenAPI types name it so; the client reads `code`. */
  body(): ApiErrorBody {
    return { ...this.extra, code: this.code, error: this.code, message: this.message };
  }
}

/** Where the cause of a redacted INTERNAL_ERROR goes: the server's log (set by `startServer`). */
type InternalErrorSink = (entry: { requestId: string; err: unknown; engineCode?: string }) => void;
let internalErrorSink: InternalErrorSink = (entry) => {
  process.stderr.write(`${JSON.stringify({ msg: "internal error", requestId: entry.requestId, engineCode: entry.engineCode, err: String((entry.err as Error)?.stack ?? entry.err) })}\n`);
};

/** Sends the causes of INTERNAL_ERRORs (which tenants see only by request id) to this log. */
export function setInternalErrorSink(sink: InternalErrorSink): void {
  internalErrorSink = sink;
}

/**
 * An INTERNAL_ERROR as a tenant sees it: a generic message and a request id. The cause (runtime
 * log tails, host paths, stack) goes to the server's log under that id, never to the tenant.
 */
export function internalError(err: unknown, engineCode?: string): ApiError {
  const requestId = crypto.randomBytes(8).toString("hex");
  internalErrorSink({ requestId, err, ...(engineCode ? { engineCode } : {}) });
  return new ApiError("INTERNAL_ERROR", `Capsule failed on this request; the server's log has the cause under request id ${requestId}`, undefined, {
    requestId,
    ...(engineCode ? { engineCode } : {}),
  });
}

/** The `reason` of a memory snapshot, fork or restore this host cannot do (the engine's UNSUPPORTED). */
export const MEMORY_UNSUPPORTED = "MEMORY_UNSUPPORTED";

/** Agent codes that map one to one onto client codes. */
const AGENT_CODES: Partial<Record<string, ApiErrorCode>> = {
  FILE_NOT_FOUND: "FILE_NOT_FOUND",
  USER_NOT_FOUND: "USER_NOT_FOUND",
  SESSION_NOT_FOUND: "SESSION_NOT_FOUND",
  SERVICE_NOT_FOUND: "SERVICE_NOT_FOUND",
  SESSION_USER_MISMATCH: "SESSION_USER_MISMATCH",
};

/**
 * What an agent older than an op answers for it. The protocol version was not bumped for the
 * services and tcp.connect ops (that would restart every VM on upgrade), so a VM adopted across
 * an upgrade keeps an agent without them until it boots again.
 */
const OLDER_AGENT_OP = /^unknown op "(svc\.[a-z]+|tcp\.connect)"$/;

/** The 501 for an op the VM's agent predates: the VM needs a restart, not the caller a retry. */
function olderAgent(op: string): ApiError {
  return new ApiError("BAD_REQUEST", `the VM runs an older Capsule agent without ${op}: stop and start the VM to give it the current agent`, 501, { unsupported: true, reason: "AGENT_OUTDATED" });
}

/**
 * Maps anything thrown below a route to an ApiError. `badRequest` is the route's own 4xx code
 * for invalid input (CREATE_VM_BAD_REQUEST on create, FILES_BAD_REQUEST on files, ...).
 */
export function toApiError(err: unknown, badRequest: ApiErrorCode = "BAD_REQUEST"): ApiError {
  if (err instanceof ApiError) return err;
  if (isEngineError(err)) {
    const agentCode = err.agentCode ? AGENT_CODES[err.agentCode] : undefined;
    if (agentCode) return new ApiError(agentCode, err.message);
    switch (err.code) {
      case "VM_NOT_FOUND":
        return new ApiError("VM_NOT_FOUND", err.message);
      case "SNAPSHOT_NOT_FOUND":
        return new ApiError("SNAPSHOT_NOT_FOUND", err.message);
      case "VM_INVALID_STATE":
        return new ApiError("VM_NOT_RUNNING", err.message);
      case "EXEC_TIMED_OUT":
        return new ApiError("EXEC_TIMED_OUT", err.message);
      case "NETWORK_EXHAUSTED":
        return new ApiError("VM_LIMIT_EXCEEDED", err.message);
      case "INVALID_ARGUMENT":
      case "IMAGE_NOT_FOUND":
        return new ApiError(badRequest, err.message);
      case "UNSUPPORTED":
        // Memory asked of a VM or snapshot this host cannot checkpoint or restore: the caller can
        // ask again without memory. The route's own client-known code, never a new one (wire §2.5).
        return new ApiError(badRequest, err.message, undefined, { reason: MEMORY_UNSUPPORTED });
      case "AGENT_PROTOCOL_ERROR":
      case "AGENT_TIMEOUT":
      case "AGENT_OUTDATED":
      case "AGENT_UNAVAILABLE":
        // The VM's agent is broken, hostile or hung up mid-call (found by `npm run fuzz`): this VM cannot serve now; the server and other VMs can.
        return new ApiError("SERVICE_UNAVAILABLE", err.message, undefined, { reason: err.code });
      case "AGENT_ERROR": {
        const older = err.agentCode === "BAD_REQUEST" ? OLDER_AGENT_OP.exec(err.message) : null;
        if (older) return olderAgent(older[1] as string);
        // The guest is out of processes or memory: retry later, not a bad request.
        if (err.agentCode === "RESOURCE_EXHAUSTED") return new ApiError("SERVICE_UNAVAILABLE", err.message, undefined, { reason: err.agentCode });
        // PERMISSION_DENIED, IS_A_DIRECTORY, ...: the caller asked for something the guest refuses.
        return new ApiError(badRequest, err.message, undefined, { agentCode: err.agentCode });
      }
      default:
        return internalError(err, err.code);
    }
  }
  return internalError(err);
}

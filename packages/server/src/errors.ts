/**
 * The error registry: every error the API answers is `{code, message}` (plus optional detail
 * fields) with the HTTP status below. Codes are ones the official `freestyle@0.1.63` client knows,
 * so it throws its typed error classes; an unknown code would make it retry `POST /v1/vms` forever
 * (spec §2.5). The client ignores the status, but other callers should not have to.
 * @module
 */
import { isEngineError } from "@capsule/engine";

export const ERROR_STATUS = {
  UNAUTHORIZED: 401,
  NOT_FOUND: 404,
  VM_NOT_FOUND: 404,
  SNAPSHOT_NOT_FOUND: 404,
  FILE_NOT_FOUND: 404,
  USER_NOT_FOUND: 404,
  SESSION_NOT_FOUND: 404,
  BAD_REQUEST: 400,
  VALIDATION_ERROR: 400,
  CREATE_VM_BAD_REQUEST: 400,
  FILES_BAD_REQUEST: 400,
  INVALID_SESSION_ID: 400,
  VM_NOT_RUNNING: 400,
  FORBIDDEN: 403,
  SESSION_USER_MISMATCH: 403,
  VM_LIMIT_EXCEEDED: 403,
  EXEC_TIMED_OUT: 408,
  STILL_CREATING: 409,
  SESSION_CAP_REACHED: 429,
  INTERNAL_ERROR: 500,
  SERVICE_UNAVAILABLE: 503,
} as const;

export type ApiCode = keyof typeof ERROR_STATUS;
export type ErrorStatus = (typeof ERROR_STATUS)[ApiCode];

/** An error with a known code; thrown anywhere below a route and rendered by the app's onError. */
export class ApiError extends Error {
  constructor(
    readonly code: ApiCode,
    message: string,
    /** Overrides the registry's status (e.g. 413 for a body over the limit, 501 for unsupported features). */
    readonly statusOverride?: number,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = "ApiError";
  }

  get status(): number {
    return this.statusOverride ?? ERROR_STATUS[this.code];
  }

  /** `error` repeats the code because the OpenAPI types name it so; the client reads `code`. */
  body(): { code: ApiCode; error: ApiCode; message: string } & Record<string, unknown> {
    return { ...this.extra, code: this.code, error: this.code, message: this.message };
  }
}

/** Agent codes that map one to one onto client codes. */
const AGENT_CODES: Partial<Record<string, ApiCode>> = {
  FILE_NOT_FOUND: "FILE_NOT_FOUND",
  USER_NOT_FOUND: "USER_NOT_FOUND",
  SESSION_NOT_FOUND: "SESSION_NOT_FOUND",
  SESSION_USER_MISMATCH: "SESSION_USER_MISMATCH",
};

/**
 * Maps anything thrown below a route to an ApiError. `badRequest` is the route's own 4xx code
 * for invalid input (CREATE_VM_BAD_REQUEST on create, FILES_BAD_REQUEST on files, ...).
 */
export function toApiError(err: unknown, badRequest: ApiCode = "BAD_REQUEST"): ApiError {
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
      case "AGENT_ERROR":
        // PERMISSION_DENIED, IS_A_DIRECTORY, ...: the caller asked for something the guest refuses.
        return new ApiError(badRequest, err.message, undefined, { agentCode: err.agentCode });
      default:
        return new ApiError("INTERNAL_ERROR", err.message, undefined, { engineCode: err.code });
    }
  }
  return new ApiError("INTERNAL_ERROR", err instanceof Error ? err.message : String(err));
}

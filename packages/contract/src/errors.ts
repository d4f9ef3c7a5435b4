/**
 * The error registry: every error the Capsule API answers, as `{code, message}` (plus `error` =
 * code, and optional detail fields such as `reason`) with the HTTP status below.
 *
 * Every code is one the official `freestyle@0.1.63` client knows (a unit test checks each against
 * the client's own table), so it throws its typed error class. An unknown code would make that
 * client resend `POST /v1/vms` every 2 s forever (wire spec §2.5): a new failure that needs its own
 * name gets a client-known code here and Capsule's own detail in the `reason` field.
 *
 * This module has no imports, so the SDK and the CLI load it without zod. `docs/errors.md`
 * documents each code; a test keeps it, the OpenAPI document and the SDK in step with this table.
 * @module
 */

/** One registry entry. */
export interface ApiErrorSpec {
  /** The HTTP status the server answers with (a route may override it, e.g. 413, 426, 501). */
  readonly status: number;
  /** When the server answers this code. */
  readonly description: string;
  /** True when the same request may succeed later without the caller changing anything. */
  readonly retryable: boolean;
}

export const API_ERRORS = {
  UNAUTHORIZED: { status: 401, retryable: false, description: "No API key, or an invalid or revoked one." },
  FORBIDDEN: { status: 403, retryable: false, description: "The request is not allowed in this form (a console request without `X-Capsule-Console: 1`)." },
  NOT_FOUND: { status: 404, retryable: false, description: "No such route, or a console file that does not exist." },
  VM_NOT_FOUND: { status: 404, retryable: false, description: "No such VM for this account (another account's VM answers this too)." },
  SNAPSHOT_NOT_FOUND: { status: 404, retryable: false, description: "No such snapshot for this account." },
  FILE_NOT_FOUND: { status: 404, retryable: false, description: "The path does not exist in the VM, or not for the Linux user the call runs as." },
  USER_NOT_FOUND: { status: 404, retryable: false, description: "The Linux user named by `X-Freestyle-Vm-Linux-User-Id` does not exist in the VM." },
  SERVICE_NOT_FOUND: { status: 404, retryable: false, description: "No such service (`vm.systemd`) in the VM, or not one of the request's Linux user." },
  SESSION_NOT_FOUND: { status: 404, retryable: false, description: "No such PTY session in the VM, or no such v5 upload (`reason` UPLOAD_NOT_FOUND: another account's, ended, expired, or from before a restart)." },
  BAD_REQUEST: { status: 400, retryable: false, description: "The request is invalid. With `reason` MEMORY_UNSUPPORTED: a memory snapshot or fork of a VM that cannot be checkpointed (a runc VM, a server on host networking, an agent without checkpoint support). With status 501: a Freestyle feature Capsule does not have (`unsupported: true`). With 426: a WebSocket route called without an upgrade. With 431 or 400: a request Node's HTTP parser refuses (headers over 16 KiB, malformed)." },
  VALIDATION_ERROR: { status: 400, retryable: false, description: "A field, header or query parameter failed validation (413: a body over the size limit)." },
  CREATE_VM_BAD_REQUEST: { status: 400, retryable: false, description: "`POST /v1/vms` with invalid options, an unknown base image or a feature Capsule lacks (413: a body over the limit), or from a memory snapshot this server cannot restore (`reason` MEMORY_UNSUPPORTED: it runs on host networking now, or the agent the snapshot was taken with is gone; `memory: false` boots its disk)." },
  FILES_BAD_REQUEST: { status: 400, retryable: false, description: "A file call with a bad path (relative, `..`, a directory where a file is expected) or a bad `Range`, a v5 write whose body does not match its `sha256` (`reason` SHA256_MISMATCH; nothing is written), or one the guest refuses (`agentCode`); 413: a body over the limit. v5 uploads: a chunk at the wrong offset, one while another is in flight, or a commit before every byte (status 409, `reason` OFFSET_MISMATCH / UPLOAD_BUSY / UPLOAD_INCOMPLETE), a chunk past the declared size or empty (`reason` CHUNK_PAST_SIZE / EMPTY_CHUNK), a commit whose bytes do not match `sha256` (SHA256_MISMATCH; the old file is kept)." },
  INVALID_SESSION_ID: { status: 400, retryable: false, description: "A PTY session id that does not match `[a-zA-Z0-9._-]{1,64}`, or one chosen by the client." },
  VM_NOT_RUNNING: { status: 400, retryable: false, description: "The VM is stopped (by its owner or by the server) and the call needs it running." },
  SESSION_USER_MISMATCH: { status: 403, retryable: false, description: "The PTY session was opened as a different Linux user than the request's." },
  VM_LIMIT_EXCEEDED: { status: 403, retryable: false, description: "No more VMs can be created or run: the account's VM or running-VM cap (`reason` ACCOUNT_VMS / ACCOUNT_RUNNING_VMS), or the host's address pool, is used up." },
  SNAPSHOT_LIMIT_EXCEEDED: { status: 403, retryable: false, description: "No more snapshots can be taken: the account's snapshot count or snapshot bytes cap (`reason` ACCOUNT_SNAPSHOTS / ACCOUNT_SNAPSHOT_BYTES) is used up." },
  MEM_OVER_PLAN_LIMIT: { status: 403, retryable: false, description: "The requested memory is over the most this server allows per VM." },
  VCPU_OVER_PLAN_LIMIT: { status: 403, retryable: false, description: "The requested vCPU count is over the most this server allows per VM." },
  ROOTFS_OVER_PLAN_LIMIT: { status: 403, retryable: false, description: "The requested disk size (`rootfsSizeGb`) is over the most this server allows per VM." },
  EXEC_TIMED_OUT: { status: 408, retryable: false, description: "The command ran past its `timeoutMs` and was killed." },
  DOMAIN_ALREADY_EXISTS: { status: 400, retryable: false, description: "A create's `domains` names a host name another account has claimed." },
  SERVICE_ALREADY_EXISTS: { status: 409, retryable: false, description: "A service of that name exists in the VM already." },
  STILL_CREATING: { status: 409, retryable: true, description: "The VM is still being created." },
  SESSION_CAP_REACHED: { status: 429, retryable: false, description: "The VM has as many PTY sessions as it may hold, or the account as many open PTY connections (`reason` PTY_CONCURRENCY), or as many v5 uploads or declared upload bytes open (`reason` UPLOAD_SESSIONS / UPLOAD_BYTES)." },
  VM_SETUP_FAILED: { status: 500, retryable: false, description: "A declarative snapshot build (`POST /v1/vms/snapshots`, or a create with an inline `template` or `spec`) failed: `buildId` names it, `reason` the phase, `diagnostics` the services' states and the failed ones' logs. Nothing it made is kept." },
  INTERNAL_ERROR: { status: 500, retryable: false, description: "Capsule itself failed; the server's log has the cause (the body may carry `engineCode`)." },
  SERVICE_UNAVAILABLE: { status: 503, retryable: true, description: "The server cannot serve this now: a part is disabled, the host is out of memory or CPU for VMs (`reason` HOST_MEMORY / HOST_CPU), the VM's guest agent broke the protocol, timed out, went away, is outdated, or its VM is out of processes (`reason` AGENT_PROTOCOL_ERROR / AGENT_TIMEOUT / AGENT_UNAVAILABLE / AGENT_OUTDATED / RESOURCE_EXHAUSTED), or (status 429) the account runs as many execs as it may at once (`reason` EXEC_CONCURRENCY), or a build's repository cannot be fetched now (`reason` REPO_UNREACHABLE: the remote did not answer; REPO_MIRRORS_FULL: the host's repository mirrors are full with ones running builds use)." },
} as const satisfies Record<string, ApiErrorSpec>;

/** Every code the API answers with. */
export type ApiErrorCode = keyof typeof API_ERRORS;

/** The registry's codes, in registry order. */
export const API_ERROR_CODES = Object.freeze(Object.keys(API_ERRORS)) as readonly ApiErrorCode[];

/** True when `code` is one of the registry's codes. */
export function isApiErrorCode(code: unknown): code is ApiErrorCode {
  return typeof code === "string" && Object.prototype.hasOwnProperty.call(API_ERRORS, code);
}

/** The registry's HTTP status for a code. */
export function errorStatus(code: ApiErrorCode): number {
  return API_ERRORS[code].status;
}

/**
 * The optional detail fields an error body may carry, with what each means. Only these: the
 * server's `ApiError` accepts no others, and docs/errors.md and the OpenAPI `Error` schema list
 * exactly these (checked by the contract sync test).
 */
export const API_ERROR_DETAILS = {
  reason: "Capsule's finer reason when the code is broader (for example which limit was hit, or AGENT_PROTOCOL_ERROR).",
  agentCode: "The guest agent's own code when the guest refused an operation (PERMISSION_DENIED, IS_A_DIRECTORY, ...).",
  engineCode: "The engine's code behind an INTERNAL_ERROR.",
  requestId: "On an INTERNAL_ERROR: the id under which the server's log has the cause (the message itself says nothing about the host).",
  unsupported: "true on a 501 for a Freestyle feature Capsule does not have.",
  buildId: "On a VM_SETUP_FAILED: the failed build (`GET /v1/vms/builds/{id}` and its phases).",
  snapshotId: "On a VM_SETUP_FAILED: the snapshot the build started from (null: the base image).",
  diagnostics: "On a VM_SETUP_FAILED: `{serviceStates: [{activeState, subState, services}], failedServiceLogs: [{unitName, log}]}`.",
} as const;

/** What a failed build says about its services, in the shape the official client renders. */
export interface BuildDiagnostics {
  serviceStates: Array<{ activeState: string; subState: string; services: string[] }>;
  failedServiceLogs: Array<{ unitName: string; log: string }>;
}

export interface ApiErrorDetails {
  reason?: string;
  agentCode?: string;
  engineCode?: string;
  requestId?: string;
  unsupported?: boolean;
  buildId?: string;
  snapshotId?: string | null;
  diagnostics?: BuildDiagnostics;
}

/**
 * The JSON body of every error answer. `error` repeats `code` because Freestyle's OpenAPI types
 * name it so; the client reads `code`.
 */
export interface ApiErrorBody extends ApiErrorDetails {
  code: ApiErrorCode;
  error: ApiErrorCode;
  message: string;
}

// Compile-time: the detail table and the interface name the same fields.
const _detailsCover: Record<keyof ApiErrorDetails, string> = API_ERROR_DETAILS;
const _detailsExact: Record<keyof typeof API_ERROR_DETAILS, unknown> = {} as Required<ApiErrorDetails>;
void _detailsCover;
void _detailsExact;

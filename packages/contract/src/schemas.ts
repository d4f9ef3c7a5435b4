/**
 * Request and response schemas of the Capsule HTTP API (zod v4), and their TypeScript types.
 * Field names and shapes follow the Freestyle v1 wire contract. The server validates with them
 * and builds its OpenAPI document from them (`.meta({ id })` names the component); clients use
 * the inferred types (`import type`, which loads nothing at run time).
 *
 * One name per concept: `VmInfo` is the API's VM object, `VmState` its state, `ExecResult` an
 * exec's answer, `DirEntry` a directory entry, `PtySessionInfo` a PTY session.
 * @module
 */
import { z } from "zod";
import { API_ERROR_CODES, API_ERROR_DETAILS, API_ERRORS, type ApiErrorBody, type ApiErrorCode } from "./errors.js";
import { SystemdConfig } from "./systemd.js";
import { ENV_NAME_RE } from "./wire.js";

export * from "./preview.js";

export * from "./systemd.js";

export * from "./builds.js";

/** The body of every error answer (see `@capsule/contract/errors` and docs/errors.md). */
export const ErrorBody = z
  .object({
    /** A registry code; the Freestyle client maps it to its typed error. */
    code: z.enum(API_ERROR_CODES as [ApiErrorCode, ...ApiErrorCode[]]).meta({ example: "VM_NOT_FOUND" }),
    /** Repeats `code` (Freestyle's OpenAPI types name it so). */
    error: z.enum(API_ERROR_CODES as [ApiErrorCode, ...ApiErrorCode[]]),
    message: z.string(),
    reason: z.string().optional().meta({ description: API_ERROR_DETAILS.reason }),
    agentCode: z.string().optional().meta({ description: API_ERROR_DETAILS.agentCode }),
    engineCode: z.string().optional().meta({ description: API_ERROR_DETAILS.engineCode }),
    requestId: z.string().optional().meta({ description: API_ERROR_DETAILS.requestId }),
    unsupported: z.boolean().optional().meta({ description: API_ERROR_DETAILS.unsupported }),
    buildId: z.string().optional().meta({ description: API_ERROR_DETAILS.buildId }),
    snapshotId: z.string().nullable().optional().meta({ description: API_ERROR_DETAILS.snapshotId }),
    diagnostics: z
      .object({
        serviceStates: z.array(z.object({ activeState: z.string(), subState: z.string(), services: z.array(z.string()) })),
        failedServiceLogs: z.array(z.object({ unitName: z.string(), log: z.string() })),
      })
      .optional()
      .meta({ description: API_ERROR_DETAILS.diagnostics }),
  })
  .meta({
    id: "Error",
    description: [
      "Error answer: `{code, message}` with a code the Freestyle client knows (docs/errors.md). The codes, with their usual status:",
      ...API_ERROR_CODES.map((c) => `- \`${c}\` (${API_ERRORS[c].status}${API_ERRORS[c].retryable ? ", retryable" : ""}): ${API_ERRORS[c].description}`),
    ].join("\n"),
  });

/** True when A and B are the same type (not just assignable: an optional field more on one side differs). */
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
// Compile-time: the schema and the registry's ApiErrorBody have the same fields.
const _errorBodyIsApiErrorBody: Same<z.infer<typeof ErrorBody>, ApiErrorBody> = true;
void _errorBodyIsApiErrorBody;

const LinuxName = z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, "must be a Linux user or group name: [a-z_][a-z0-9_-]{0,31}");
const AbsPath = z.string().regex(/^\/[^\0]*$/, "must be an absolute path");

/** A Linux user created in the VM when it is created. */
export const UserSpec = z.object({
  /** Login name, `[a-z_][a-z0-9_-]{0,31}`. */
  name: LinuxName,
  /** Numeric uid; default: the next free one. */
  uid: z.number().int().min(0).max(2 ** 31 - 2).optional(),
  /** Comment field of /etc/passwd. */
  gecos: z.string().max(256).regex(/^[^:\n\0]*$/, "must not contain ':' or newlines").optional(),
  /** Supplementary groups (must exist or be listed in `groups`). */
  groups: z.array(LinuxName).max(64).optional(),
  /** Home directory; default `/home/<name>`. */
  home: AbsPath.optional(),
  /** Login shell; default `/bin/bash` when present. */
  shell: AbsPath.optional(),
  /** Create a system account. Default false. */
  system: z.boolean().optional(),
});
export type UserSpec = z.infer<typeof UserSpec>;

/** A Linux group created in the VM when it is created. */
export const GroupSpec = z.object({
  name: LinuxName,
  gid: z.number().int().min(0).max(2 ** 31 - 2).optional(),
  system: z.boolean().optional(),
});
export type GroupSpec = z.infer<typeof GroupSpec>;

const Sizing = {
  /** CPU quota, in cores. Default: the server's (1). */
  vcpuCount: z.number().positive().max(1024).optional(),
  /** Memory limit, in GB. Default: the server's (2). */
  memSizeGb: z.number().positive().max(1024).optional(),
  /** Writable disk size, in GB. Default: the server's (10). */
  rootfsSizeGb: z.number().positive().max(16384).optional(),
};

export const MAX_IDLE_TIMEOUT_SECONDS = 30 * 24 * 3600;

/** A file written into the VM before `POST /v1/vms` returns. */
export const AdditionalFile = z.object({ content: z.string(), encoding: z.enum(["utf-8", "base64"]).optional(), executable: z.boolean().optional() });
export type AdditionalFile = z.infer<typeof AdditionalFile>;

/** `POST /v1/vms`. Every field is optional; `{}` boots the base image. */
/** Domains one create may claim. */
export const MAX_DOMAINS_PER_VM = 16;

export const CreateVmRequest = z
  .object({
    /** Boot from this snapshot instead of the base image. */
    snapshotId: z.string().min(1).nullish(),
    /** A label for the VM. */
    name: z.string().max(256).nullish(),
    /** Suspend the VM after this many seconds without activity. `null`: never. Absent: the server default (300 s unless configured). */
    idleTimeoutSeconds: z.number().int().min(1).max(MAX_IDLE_TIMEOUT_SECONDS).nullish().meta({
      description: "Suspend the VM after this many seconds without activity. null: never. Absent: the server default (300 s unless configured).",
    }),
    activityThresholdBytes: z.number().int().min(0).optional(),
    persistence: z.looseObject({ type: z.enum(["sticky", "ephemeral", "persistent"]) }).optional(),
    waitForReadySignal: z.boolean().optional(),
    readySignalTimeoutSeconds: z.number().optional(),
    recreate: z.boolean().optional(),
    /** Linux users to create before the call returns. */
    users: z.array(UserSpec).max(64).optional(),
    /** Linux groups to create before the users. */
    groups: z.array(GroupSpec).max(64).optional(),
    /** Files written before the call returns, by absolute path. */
    additionalFiles: z.record(AbsPath, AdditionalFile).optional(),
    ...Sizing,
    template: z.looseObject({ snapshotId: z.string().min(1).nullish(), baseImage: z.unknown().optional(), ...Sizing }).optional(),
    // Accepted by the schema so the service can reject them with a clear message.
    git: z.unknown().optional(),
    gitRepos: z.unknown().optional(),
    /** Host names whose requests, on Capsule's port, go to a VM port (publicly). */
    domains: z
      .array(z.object({ domain: z.string().min(1).max(253), vmPort: z.number().int().min(1).max(65535).nullish() }))
      .max(MAX_DOMAINS_PER_VM)
      .nullish()
      .meta({ description: "Host names whose HTTP requests, arriving on Capsule's port, are proxied (publicly) to `vmPort` (default 443) of the VM. A name another account holds answers DOMAIN_ALREADY_EXISTS; the API's host and the preview domain are reserved; the server may restrict the suffixes." }),
    /** Services installed, and the enabled ones started, before the call returns. */
    systemd: SystemdConfig.nullish(),
    nics: z.unknown().optional(),
    dockerCredentials: z.unknown().optional(),
    udpHolePunchPorts: z.unknown().optional(),
    spec: z.unknown().optional(),
    memory: z.boolean().optional().meta({
      description: "Capsule extension, for a memory snapshot (`memory: true` in its record): absent or true resumes its processes where they were; false boots its disk only, processes afresh. A memory snapshot this server cannot restore answers 400 CREATE_VM_BAD_REQUEST with `reason: MEMORY_UNSUPPORTED`. Ignored for a disk snapshot or the base image.",
    }),
  })
  .meta({ id: "CreateVmRequest" });
export type CreateVmRequest = z.infer<typeof CreateVmRequest>;

export const CreateVmResponse = z
  .object({ id: z.string(), domains: z.array(z.string()), consoleUrl: z.string().nullable(), snapshotId: z.string().nullable() })
  .meta({ id: "CreateVmResponse" });
export type CreateVmResponse = z.infer<typeof CreateVmResponse>;

/**
 * The states the API reports (the engine's finer states map onto these). `lost`: start-up
 * recovery found the VM's guest misbehaving and stopped it; `lostReason` says what it did.
 */
export const VM_STATES = ["starting", "running", "suspending", "suspended", "stopped", "lost"] as const;
export const VmState = z.enum(VM_STATES).meta({ id: "VmState" });
export type VmState = z.infer<typeof VmState>;

/** The API's VM object: list items of `GET /v1/vms` and `GET /v1/vms/{vm_id}`. */
export const VmInfo = z
  .object({
    id: z.string(),
    name: z.string().nullable(),
    state: VmState,
    /** ISO 8601. */
    createdAt: z.string(),
    snapshotId: z.string().nullable(),
    idleTimeoutSeconds: z.number().nullable(),
    sizing: z.object({ vcpuCount: z.number(), memSizeMib: z.number(), rootfsSizeMb: z.number() }),
    /** Capsule's own field, present only when `state` is `lost`: why the VM was stopped. */
    lostReason: z.string().optional(),
  })
  .meta({ id: "VmInfo" });
export type VmInfo = z.infer<typeof VmInfo>;

/** `GET /v1/vms`. */
export const VmList = z
  .object({
    vms: z.array(VmInfo),
    totalCount: z.number(),
    runningCount: z.number(),
    startingCount: z.number(),
    suspendingCount: z.number(),
    suspendedCount: z.number(),
    stoppedCount: z.number(),
  })
  .meta({ id: "VmList" });
export type VmList = z.infer<typeof VmList>;

/** Largest decoded `stdin` of an exec-await, `/v1` and `/v5` alike (0.2: "up to 1 MiB decoded"). */
export const MAX_EXEC_STDIN_BYTES = 1024 * 1024;

/** How many bytes padded base64 (as `z.base64()` requires) decodes to. No Buffer: browsers load the contract too. */
function base64Bytes(b64: string): number {
  return (b64.length / 4) * 3 - (b64.endsWith("==") ? 2 : b64.endsWith("=") ? 1 : 0);
}

/** An exec's stdin: padded base64 of at most MAX_EXEC_STDIN_BYTES decoded (`/v1` and `/v5`). */
export const ExecStdin = z.base64().refine((b64) => base64Bytes(b64) <= MAX_EXEC_STDIN_BYTES, `over the limit of ${MAX_EXEC_STDIN_BYTES} bytes (decoded)`);

/** `POST /v1/vms/{vm_id}/exec-await`. `env` and `stdin` are Capsule extensions the freestyle 0.1 client never sends. */
export const ExecRequest = z
  .object({
    /** Command line, run through `/bin/sh -c` (multi-line scripts, pipes and `&&` work). */
    command: z.string().min(1).max(1024 * 1024),
    /** Legacy Freestyle terminal name; ignored by Capsule. */
    terminal: z.string().nullish(),
    /** Kill the command after this many milliseconds (EXEC_TIMED_OUT). Absent or null: no limit. */
    timeoutMs: z.number().int().positive().max(24 * 3600 * 1000).nullish(),
    env: z
      .record(z.string().regex(ENV_NAME_RE), z.string(), { error: (issue) => (issue.code === "invalid_key" ? "must be a shell variable name ([A-Za-z_][A-Za-z0-9_]*)" : undefined) })
      .optional()
      .meta({ description: "Capsule extension: variables added to the command's environment (names as exec-stream's `env`)." }),
    stdin: ExecStdin.optional()
      .meta({ description: `Capsule extension: the command's stdin, base64 (at most ${MAX_EXEC_STDIN_BYTES} bytes decoded); absent: stdin is at EOF.` }),
  })
  .meta({ id: "ExecRequest" });
export type ExecRequest = z.infer<typeof ExecRequest>;

/** An exec's answer. A non-zero exit is not an error: check `statusCode`. */
export const ExecResult = z
  .object({
    stdout: z.string().nullable(),
    stderr: z.string().nullable(),
    /** Exit status; 128+n when the command was killed by signal n. */
    statusCode: z.number().nullable(),
    /** Present and true when output past the server's per-stream limit was dropped. */
    truncated: z.boolean().optional(),
  })
  .meta({ id: "ExecResult" });
export type ExecResult = z.infer<typeof ExecResult>;

/** `PUT /v1/vms/{vm_id}/files/{filepath}`. */
export const WriteFileRequest = z
  .object({ content: z.string(), encoding: z.enum(["base64", "utf8", "utf-8"]).optional() })
  .meta({ id: "WriteFileRequest" });
export type WriteFileRequest = z.infer<typeof WriteFileRequest>;

/** `GET /v1/vms/{vm_id}/files/{filepath}` on a file. */
export const FileContent = z.object({ content: z.string(), encoding: z.literal("base64") }).meta({ id: "FileContent" });
export type FileContent = z.infer<typeof FileContent>;

/** A directory entry. */
export const DirEntry = z.object({ name: z.string(), kind: z.enum(["file", "directory"]) }).meta({ id: "DirEntry" });
export type DirEntry = z.infer<typeof DirEntry>;

/** `GET /v1/vms/{vm_id}/files/{filepath}` on a directory. */
export const DirListing = z.object({ files: z.array(DirEntry) }).meta({ id: "DirListing" });
export type DirListing = z.infer<typeof DirListing>;

/** `POST /v1/vms/{vm_id}/snapshot`. */
export const SnapshotRequest = z
  .object({
    name: z.string().max(256).nullish(),
    persistence: z.unknown().optional(),
    memory: z.boolean().optional().meta({
      description: "Capsule extension. true: capture the VM's memory (its running processes) with its disk at one instant; a VM booted from the snapshot resumes them. A VM that cannot be checkpointed (a runc VM, a host on host networking, an older agent) answers 400 BAD_REQUEST with `reason: MEMORY_UNSUPPORTED`, a stopped one 400 VM_NOT_RUNNING. Absent or false: the disk only.",
    }),
  })
  .meta({ id: "SnapshotRequest" });
export type SnapshotRequest = z.infer<typeof SnapshotRequest>;

/** `POST /v1/vms/{vm_id}/snapshot`'s answer. */
export const SnapshotResult = z
  .object({ snapshotId: z.string(), sourceVmId: z.string(), sourceVmInstanceId: z.string().nullable() })
  .meta({ id: "SnapshotResult" });
export type SnapshotResult = z.infer<typeof SnapshotResult>;

/** A snapshot as `GET /v1/vms/snapshots[/{id}]` describes it. */
export const SnapshotInfo = z
  .object({
    snapshotId: z.string(),
    name: z.string().nullable(),
    state: z.literal("ready"),
    sourceVmId: z.string().nullable(),
    accountId: z.string(),
    /** ISO 8601. */
    createdAt: z.string(),
    sizeBytes: z.number().meta({ description: "Capsule extension: the bytes it holds, its disk layer plus its memory image (what the account's snapshot-bytes cap counts)." }),
    memory: z.boolean().meta({ description: "Capsule extension: true when it holds the VM's memory too, so a VM created from it resumes the source's processes." }),
    memoryBytes: z.number().meta({ description: "Capsule extension: the bytes of its memory image (part of `sizeBytes`); 0 for a disk snapshot." }),
    failed: z.boolean(),
    cancelled: z.boolean(),
    lost: z.boolean(),
    deleted: z.boolean(),
    snapshotPersistence: z.object({ type: z.literal("persistent") }),
    /** The build that made it (`POST /v1/vms/snapshots`); null: taken from a VM. `Snapshot.getBuild()` reads it. */
    buildId: z.string().nullable(),
    /** That build's layer hash. */
    templateHash: z.string().nullable(),
  })
  .meta({ id: "SnapshotInfo" });
export type SnapshotInfo = z.infer<typeof SnapshotInfo>;

/** `GET /v1/vms/snapshots`. */
export const SnapshotList = z
  .object({
    snapshots: z.array(SnapshotInfo),
    totalCount: z.number(),
    buildingCount: z.number(),
    readyCount: z.number(),
    failedCount: z.number(),
    cancelledCount: z.number(),
    lostCount: z.number(),
    deletedCount: z.number(),
  })
  .meta({ id: "SnapshotList" });
export type SnapshotList = z.infer<typeof SnapshotList>;

/** `PATCH /v1/vms/snapshots/{snapshot_id}`. */
export const PatchSnapshotRequest = z.object({ name: z.string().max(256).nullable() }).meta({ id: "PatchSnapshotRequest" });
export type PatchSnapshotRequest = z.infer<typeof PatchSnapshotRequest>;

/** `POST /v1/vms/{vm_id}/fork`. */
export const ForkRequest = z
  .looseObject({
    count: z.number().int().min(1).max(16).optional(),
    memory: z.boolean().optional().meta({
      description: "Capsule extension. Absent: each fork resumes the source's running processes (one checkpoint of its memory, restored into each) where the VM can be checkpointed, else boots the source's current disk afresh. true: memory forks or 400 BAD_REQUEST with `reason: MEMORY_UNSUPPORTED`; false: disk forks.",
    }),
  })
  .meta({ id: "ForkRequest" });
export type ForkRequest = z.infer<typeof ForkRequest>;

/** A PTY session as `GET /v1/vms/{vm_id}/pty/sessions` reports it. */
export const PtySessionInfo = z
  .object({
    sessionId: z.string(),
    running: z.boolean(),
    exitCode: z.number().nullable(),
    exitedAtMs: z.number().nullable(),
    cols: z.number(),
    rows: z.number(),
    /** The command line it runs. */
    exec: z.string().nullable(),
    createdAtMs: z.number(),
    attachedCount: z.number(),
    /** The Linux user it runs as. */
    user: z.string().nullable(),
    suspended: z.boolean(),
  })
  .meta({ id: "PtySessionInfo" });
export type PtySessionInfo = z.infer<typeof PtySessionInfo>;

/** `GET /v1/vms/{vm_id}/pty/sessions`. */
export const PtySessionList = z.object({ sessions: z.array(PtySessionInfo) }).meta({ id: "PtySessionList" });
export type PtySessionList = z.infer<typeof PtySessionList>;

/**
 * The `/v5` HTTP API: the routes the official `freestyle@0.2.x` client calls (wire contract:
 * docs of that client, captured in ../shared/spec/freestyle-0.2-wire.md). Request and response
 * schemas (zod v4) and their types; the server validates with them and documents them in its
 * OpenAPI document under `V5…` component names. Errors are the one registry's
 * (`@capsule/contract/errors`): 0.2.x reads `code` and `message` only.
 *
 * What Capsule does not have yet is accepted by the schema and refused by the server with a
 * coded 501, never silently ignored (slugs, metadata, TTLs, VPCs, TLS rules, inbound firewall
 * rules).
 * @module
 */
import { z } from "zod";
import { ENV_NAME_RE } from "../wire.js";
import { ExecStdin, MAX_EXEC_STDIN_BYTES } from "../schemas.js";
import { IdleTimeoutSeconds, LinuxName, MAX_MODE, Seconds, Sha256Hex, UnsupportedVmFields } from "./common.js";
import { FirewallRuleData, FirewallSpec } from "./firewall.js";

export * from "./firewall.js";

/** The longest exec `timeoutMs` (0.2's "up to 86400000 with native-agent support"). */
export const MAX_EXEC_TIMEOUT_MS = 24 * 3600 * 1000;
/** The exec timeout when the request has none (0.2 documents 30 s). */
export const DEFAULT_EXEC_TIMEOUT_MS = 30_000;


// ---------------------------------------------------------------- VMs

export const V5_VM_STATES = ["starting", "running", "pausing", "paused", "stopped"] as const;
export const VmState = z.enum(V5_VM_STATES).meta({ id: "V5VmState" });
export type VmState = z.infer<typeof VmState>;

/** `POST /v5/vms`. Unknown keys are dropped (0.2 sends the caller's object as given). */
export const CreateVmRequest = z
  .object({
    firewall: FirewallSpec,
    /** A Capsule snapshot id; absent or null: the base image. */
    snapshotId: z.string().min(1).nullish(),
    /** Kept as the VM's name. */
    displayName: z.string().max(256).nullish(),
    idleTimeoutSeconds: IdleTimeoutSeconds.meta({ description: "Stop the VM's processes after this many seconds without activity (it wakes on the next call). -1, null or absent: never." }),
    ...UnsupportedVmFields,
    vpcs: z.array(z.unknown()).optional(),
    networks: z.array(z.unknown()).optional(),
    placement: z.unknown().optional(),
    tls: z.looseObject({ rules: z.array(z.unknown()) }).optional(),
    memory: z.boolean().optional().meta({
      description: "Capsule extension, for a snapshot with `contents: memory+disk`: absent or true resumes its processes where they were; false boots its disk only, processes afresh. One this server cannot restore answers 400 CREATE_VM_BAD_REQUEST with `reason: MEMORY_UNSUPPORTED`.",
    }),
  })
  .meta({ id: "V5CreateVmRequest" });
export type CreateVmRequest = z.infer<typeof CreateVmRequest>;

export const VmResources = z.object({ cpu: z.number(), memory: z.number().meta({ description: "MiB" }), storage: z.number().meta({ description: "MiB" }) });

export const VmData = z
  .object({
    id: z.string(),
    state: VmState,
    slug: z.null(),
    displayName: z.string().nullable(),
    resources: VmResources,
    snapshotId: z.string().nullable(),
    idleTimeoutSeconds: z.number().nullable(),
    metadata: z.record(z.string(), z.string()),
    vpcs: z.array(z.unknown()).meta({ description: "Always empty in Capsule" }),
    networks: z.array(z.unknown()).meta({ description: "Always empty in Capsule" }),
    createdAt: z.string(),
    /** Capsule keeps no update time: the creation time. */
    updatedAt: z.string(),
    /** Capsule extension: why start-up recovery stopped the VM (its guest misbehaved). */
    lostReason: z.string().optional(),
  })
  .meta({ id: "V5VmData" });
export type VmData = z.infer<typeof VmData>;

export const CreateVmResponse = VmData.extend({ firewallRules: z.array(FirewallRuleData), tlsRules: z.array(z.unknown()).meta({ description: "Always empty in Capsule" }) }).meta({ id: "V5CreateVmResponse" });
export type CreateVmResponse = z.infer<typeof CreateVmResponse>;

export const ListVmsQuery = z.object({
  state: VmState.optional(),
  slug: z.string().optional(),
  snapshotId: z.string().optional(),
  metadata: z.string().optional(),
  limit: z.coerce.number().int().min(0).max(10_000).optional(),
  offset: z.coerce.number().int().min(0).optional(),
});
export type ListVmsQuery = z.infer<typeof ListVmsQuery>;

export const VmList = z
  .object({
    vms: z.array(VmData),
    totalCount: z.number(),
    runningCount: z.number(),
    startingCount: z.number(),
    pausingCount: z.number(),
    pausedCount: z.number(),
    stoppedCount: z.number(),
  })
  .meta({ id: "V5VmList" });
export type VmList = z.infer<typeof VmList>;

// ---------------------------------------------------------------- exec

/** A POSIX environment variable name. */
const EnvName = z.string().regex(ENV_NAME_RE, "must be a POSIX environment variable name");

export const ExecRequest = z
  .object({
    command: z.string().min(1).max(1024 * 1024),
    linuxUser: LinuxName.optional().meta({ description: "Run as this Linux user. Absent: the VM's uid-1000 account, or root when it has none." }),
    timeoutMs: z.number().int().positive().max(MAX_EXEC_TIMEOUT_MS).optional().meta({ description: `Kill the command after this long; default ${DEFAULT_EXEC_TIMEOUT_MS}. A timeout answers 200 with statusCode null.` }),
    env: z.record(EnvName, z.string().max(128 * 1024)).optional(),
    stdin: ExecStdin.optional()
      .meta({ description: `The command's stdin, base64 (at most ${MAX_EXEC_STDIN_BYTES} bytes decoded); absent: stdin is at EOF.` }),
  })
  .meta({ id: "V5ExecRequest" });
export type ExecRequest = z.infer<typeof ExecRequest>;

export const ExecResult = z
  .object({
    stdout: z.string().nullable(),
    stderr: z.string().nullable(),
    statusCode: z.number().nullable().meta({ description: "Exit status (128+n for signal n); null when the timeout killed the command." }),
    truncated: z.boolean().optional(),
  })
  .meta({ id: "V5ExecResult" });
export type ExecResult = z.infer<typeof ExecResult>;

// ---------------------------------------------------------------- files

export const PathQuery = z.object({ path: z.string().min(1).meta({ description: "Absolute path in the VM (no `..`, at most 4096 bytes)" }) });

export const WriteFileQuery = PathQuery.extend({
  mode: z
    .string()
    .regex(/^\d{1,4}$/, "must be a decimal number (0o755 is 493)")
    .refine((m) => Number(m) <= MAX_MODE, `must be at most ${MAX_MODE} (0o7777)`)
    .optional()
    .meta({ description: "Permission bits as a DECIMAL number (493 = 0o755). Default: the file's current mode, or 0o600 for a new file." }),
  sha256: Sha256Hex.optional()
    .meta({ description: "SHA-256 of the body; on a mismatch nothing is written (400 FILES_BAD_REQUEST, reason SHA256_MISMATCH)." }),
});
export type WriteFileQuery = z.infer<typeof WriteFileQuery>;

export const MkdirRequest = z.object({ path: z.string().min(1) }).meta({ id: "V5MkdirRequest" });

export const DirEntry = z.object({ name: z.string(), kind: z.enum(["file", "directory", "symlink", "other"]) }).meta({ id: "V5DirEntry" });
export const DirListing = z.object({ entries: z.array(DirEntry) }).meta({ id: "V5DirListing" });
export type DirListing = z.infer<typeof DirListing>;

export const PathExists = z.object({ exists: z.boolean() }).meta({ id: "V5PathExists" });

export const FileStat = z
  .object({
    size: z.number(),
    isFile: z.boolean(),
    isDirectory: z.boolean(),
    isSymlink: z.boolean(),
    permissions: z.string().meta({ description: "Octal, e.g. `0644`" }),
    owner: z.string().meta({ description: "User name, or the uid when /etc/passwd has none" }),
    group: z.string().meta({ description: "Group name, or the gid when /etc/group has none" }),
    modified: z.string().meta({ description: "ISO 8601" }),
  })
  .meta({ id: "V5FileStat" });
export type FileStat = z.infer<typeof FileStat>;

// ---------------------------------------------------------------- snapshots

export const SnapshotRequest = z
  .object({
    /** Kept as the snapshot's name. */
    displayName: z.string().max(256).nullish(),
    slug: z.string().nullish(),
    autoDeleteSeconds: Seconds,
    ttlSeconds: Seconds,
  })
  .meta({ id: "V5SnapshotRequest" });
export type SnapshotRequest = z.infer<typeof SnapshotRequest>;

export const SnapshotData = z
  .object({
    id: z.string(),
    sourceVmId: z.string().nullable(),
    slug: z.null(),
    displayName: z.string().nullable(),
    accountId: z.string(),
    public: z.literal(false),
    autoDeleteSeconds: z.null(),
    ttlSeconds: z.null(),
    lastUsedAt: z.null(),
    createdAt: z.string(),
    updatedAt: z.string(),
    contents: z.enum(["memory+disk", "disk"]).meta({
      description: "Capsule extension: what the snapshot holds. `memory+disk`: a VM created from it resumes the source's processes; `disk`: it starts them afresh (the source could not be checkpointed, or the snapshot was taken through /v1 without memory).",
    }),
    sizeBytes: z.number().meta({ description: "Capsule extension: the bytes it holds, its disk layer plus its memory image (what the account's snapshot-bytes cap counts)." }),
    memoryBytes: z.number().meta({ description: "Capsule extension: the bytes of its memory image (part of `sizeBytes`); 0 for `contents: disk`." }),
  })
  .meta({ id: "V5SnapshotData", description: "A snapshot: the VM's disk, and its memory where the VM could be checkpointed (`contents`)." });
export type SnapshotData = z.infer<typeof SnapshotData>;

export const SnapshotCreated = z.object({ snapshotId: z.string(), sourceVmId: z.string(), snapshot: SnapshotData }).meta({ id: "V5SnapshotCreated" });
export type SnapshotCreated = z.infer<typeof SnapshotCreated>;

export const ListSnapshotsQuery = z.object({
  sourceVmId: z.string().optional(),
  limit: z.coerce.number().int().min(0).max(10_000).optional(),
  offset: z.coerce.number().int().min(0).optional(),
});

export const SnapshotList = z.object({ snapshots: z.array(SnapshotData), totalCount: z.number() }).meta({ id: "V5SnapshotList" });
export type SnapshotList = z.infer<typeof SnapshotList>;

export const PatchSnapshotRequest = SnapshotRequest.meta({ id: "V5PatchSnapshotRequest" });

// ---------------------------------------------------------------- more, in their own modules

export * from "./uploads.js";
export * from "./vm-update.js";

export * from "./pty.js";

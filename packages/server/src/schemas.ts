/**
 * Request and response schemas (zod), shared by validation and the generated OpenAPI document.
 * Field names and shapes follow the Freestyle v1 wire contract; unknown fields are ignored so
 * newer clients keep working, but fields for features Capsule lacks are rejected by the service.
 * @module
 */
import { z } from "@hono/zod-openapi";

export const ErrorBody = z
  .object({ code: z.string().openapi({ example: "VM_NOT_FOUND" }), error: z.string(), message: z.string() })
  .openapi("Error");

const LinuxName = z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, "must be a Linux user or group name: [a-z_][a-z0-9_-]{0,31}");
const AbsPath = z.string().regex(/^\/[^\0]*$/, "must be an absolute path");

export const UserSpec = z.object({
  name: LinuxName,
  uid: z.number().int().min(0).max(2 ** 31 - 2).optional(),
  gecos: z.string().max(256).regex(/^[^:\n\0]*$/, "must not contain ':' or newlines").optional(),
  groups: z.array(LinuxName).max(64).optional(),
  home: AbsPath.optional(),
  shell: AbsPath.optional(),
  system: z.boolean().optional(),
});
export type UserSpec = z.infer<typeof UserSpec>;

export const GroupSpec = z.object({
  name: LinuxName,
  gid: z.number().int().min(0).max(2 ** 31 - 2).optional(),
  system: z.boolean().optional(),
});
export type GroupSpec = z.infer<typeof GroupSpec>;

const Sizing = {
  vcpuCount: z.number().positive().max(1024).optional(),
  memSizeGb: z.number().positive().max(1024).optional(),
  rootfsSizeGb: z.number().positive().max(16384).optional(),
};

export const MAX_IDLE_TIMEOUT_SECONDS = 30 * 24 * 3600;

export const CreateVmBody = z
  .object({
    snapshotId: z.string().min(1).nullish(),
    name: z.string().max(256).nullish(),
    idleTimeoutSeconds: z.number().int().min(1).max(MAX_IDLE_TIMEOUT_SECONDS).nullish().openapi({
      description: "Suspend the VM after this many seconds without activity. null: never. Absent: the server default (300 s unless configured).",
    }),
    activityThresholdBytes: z.number().int().min(0).optional(),
    persistence: z.object({ type: z.enum(["sticky", "ephemeral", "persistent"]) }).passthrough().optional(),
    waitForReadySignal: z.boolean().optional(),
    readySignalTimeoutSeconds: z.number().optional(),
    recreate: z.boolean().optional(),
    users: z.array(UserSpec).max(64).optional(),
    groups: z.array(GroupSpec).max(64).optional(),
    additionalFiles: z
      .record(AbsPath, z.object({ content: z.string(), encoding: z.enum(["utf-8", "base64"]).optional(), executable: z.boolean().optional() }))
      .optional(),
    ...Sizing,
    template: z
      .object({ snapshotId: z.string().min(1).nullish(), baseImage: z.unknown().optional(), ...Sizing })
      .passthrough()
      .optional(),
    // Accepted by the schema so the service can reject them with a clear message.
    git: z.unknown().optional(),
    gitRepos: z.unknown().optional(),
    domains: z.unknown().optional(),
    systemd: z.unknown().optional(),
    nics: z.unknown().optional(),
    dockerCredentials: z.unknown().optional(),
    udpHolePunchPorts: z.unknown().optional(),
    spec: z.unknown().optional(),
  })
  .openapi("CreateVmRequest");
export type CreateVmBody = z.infer<typeof CreateVmBody>;

export const CreateVmResponse = z
  .object({ id: z.string(), domains: z.array(z.string()), consoleUrl: z.string().nullable(), snapshotId: z.string().nullable() })
  .openapi("CreateVmResponse");

export const VmState = z.enum(["starting", "running", "suspending", "suspended", "stopped"]);

export const VmSummary = z
  .object({
    id: z.string(),
    name: z.string().nullable(),
    state: VmState,
    createdAt: z.string(),
    snapshotId: z.string().nullable(),
    idleTimeoutSeconds: z.number().nullable(),
    sizing: z.object({ vcpuCount: z.number(), memSizeMib: z.number(), rootfsSizeMb: z.number() }),
  })
  .openapi("Vm");

export const VmParams = z.object({ vm_id: z.string().openapi({ param: { name: "vm_id", in: "path" } }) });

export const LinuxUserHeader = z.object({
  "x-freestyle-vm-linux-user-id": z
    .string()
    .regex(/^[a-z_][a-z0-9_-]{0,31}\$?$/, "must be a Linux user name")
    .optional()
    .openapi({ description: "Run as this Linux user inside the VM (default root)." }),
});

export const ExecBody = z
  .object({
    command: z.string().min(1).max(1024 * 1024),
    terminal: z.string().nullish(),
    timeoutMs: z.number().int().positive().max(24 * 3600 * 1000).nullish(),
  })
  .openapi("ExecRequest");

export const ExecResponse = z
  .object({ stdout: z.string().nullable(), stderr: z.string().nullable(), statusCode: z.number().nullable() })
  .openapi("ExecResponse");

export const FileParams = VmParams.extend({ filepath: z.string().openapi({ param: { name: "filepath", in: "path" }, description: "The absolute path, as ONE percent-encoded segment (/ as %2F)." }) });

export const WriteFileBody = z
  .object({ content: z.string(), encoding: z.enum(["base64", "utf8", "utf-8"]).optional() })
  .openapi("WriteFileRequest");

export const FileContent = z.object({ content: z.string(), encoding: z.literal("base64") }).openapi("FileContent");
export const DirListing = z.object({ files: z.array(z.object({ name: z.string(), kind: z.enum(["file", "directory"]) })) }).openapi("DirListing");

export const SnapshotBody = z.object({ name: z.string().max(256).nullish(), persistence: z.unknown().optional() }).openapi("SnapshotRequest");
export const SnapshotResponse = z
  .object({ snapshotId: z.string(), sourceVmId: z.string(), sourceVmInstanceId: z.string().nullable() })
  .openapi("SnapshotResponse");

export const SnapshotParams = z.object({ snapshot_id: z.string().openapi({ param: { name: "snapshot_id", in: "path" } }) });

export const SnapshotInfo = z
  .object({
    snapshotId: z.string(),
    name: z.string().nullable(),
    state: z.literal("ready"),
    sourceVmId: z.string().nullable(),
    accountId: z.string(),
    createdAt: z.string(),
    sizeBytes: z.number(),
    failed: z.boolean(),
    cancelled: z.boolean(),
    lost: z.boolean(),
    deleted: z.boolean(),
    snapshotPersistence: z.object({ type: z.literal("persistent") }),
  })
  .openapi("Snapshot");

export const PatchSnapshotBody = z.object({ name: z.string().max(256).nullable() }).openapi("PatchSnapshotRequest");

export const ForkBody = z.object({ count: z.number().int().min(1).max(16).optional() }).passthrough().openapi("ForkRequest");

export const PtySessionParams = VmParams.extend({ session_id: z.string().openapi({ param: { name: "session_id", in: "path" } }) });

export const PtySession = z
  .object({
    sessionId: z.string(),
    running: z.boolean(),
    exitCode: z.number().nullable(),
    exitedAtMs: z.number().nullable(),
    cols: z.number(),
    rows: z.number(),
    exec: z.string().nullable(),
    createdAtMs: z.number(),
    attachedCount: z.number(),
    user: z.string().nullable(),
    suspended: z.boolean(),
  })
  .openapi("PtySession");

/**
 * The server's import point for schemas: the API's request and response schemas are the
 * contract's (`@capsule/contract/schemas`, shared with the SDK and the console); this module adds
 * the OpenAPI-only parts (path parameters, the Linux-user header). One name per concept: the
 * contract's.
 * @module
 */
import { z } from "@hono/zod-openapi";
import { LINUX_USER_HEADER } from "@capsule/contract/wire";

export {
  AdditionalFile,
  CreateVmRequest,
  CreateVmResponse,
  DirEntry,
  DirListing,
  ErrorBody,
  ExecRequest,
  ExecResult,
  FileContent,
  ForkRequest,
  GroupSpec,
  MAX_EXEC_STDIN_BYTES,
  MAX_IDLE_TIMEOUT_SECONDS,
  PatchSnapshotRequest,
  PtySessionInfo,
  PtySessionList,
  SnapshotInfo,
  SnapshotList,
  SnapshotRequest,
  SnapshotResult,
  SystemdControlRequest,
  SystemdControlResult,
  SystemdCreateResult,
  SystemdDeleteResult,
  SystemdLogs,
  SystemdPatchedService,
  SystemdServiceList,
  SystemdServiceSpec,
  SystemdServiceStatus,
  DEFAULT_SYSTEMD_LOG_LINES,
  MAX_SYSTEMD_LOG_LINES,
  UserSpec,
  VmInfo,
  VmList,
  VmState,
  WriteFileRequest,
} from "@capsule/contract/schemas";

export const VmParams = z.object({ vm_id: z.string().openapi({ param: { name: "vm_id", in: "path" } }) });

export const LinuxUserHeader = z.object({
  [LINUX_USER_HEADER]: z
    .string()
    .regex(/^[a-z_][a-z0-9_-]{0,31}\$?$/, "must be a Linux user name")
    .optional()
    .openapi({ description: "Run as this Linux user inside the VM (default root)." }),
});

export const FileParams = VmParams.extend({ filepath: z.string().openapi({ param: { name: "filepath", in: "path" }, description: "The absolute path, as ONE percent-encoded segment (/ as %2F)." }) });

export const BuildParams = z.object({ build_id: z.string().max(128).openapi({ param: { name: "build_id", in: "path" } }) });

export const SnapshotParams = z.object({ snapshot_id: z.string().openapi({ param: { name: "snapshot_id", in: "path" } }) });

export const PtySessionParams = VmParams.extend({ session_id: z.string().openapi({ param: { name: "session_id", in: "path" } }) });

export const ServiceParams = VmParams.extend({ service_id: z.string().max(256).openapi({ param: { name: "service_id", in: "path" }, description: "The service's name (a trailing .service is allowed)." }) });

/**
 * Request and response shapes of the Capsule API (Freestyle v1 wire format). They are the API
 * contract's own types (`@capsule/contract`, inferred from the schemas the server validates
 * with), imported as types only, so the SDK loads no schema code at run time.
 * @module
 */
import type { CreateVmRequest, ExecRequest } from "@capsule/contract/schemas";
import type { VmSpec } from "./spec.js";

export type {
  BuildInfo,
  BuildList,
  BuildListQuery,
  BuildPhase,
  BuildState,
  DirEntry,
  EnsureSnapshotResponse,
  ExecResult,
  GroupSpec,
  PtySessionInfo,
  SnapshotInfo,
  SnapshotList,
  SnapshotResult,
  SystemdConfig,
  SystemdControlResult,
  SystemdCreateResult,
  SystemdDeleteResult,
  SystemdLogs,
  SystemdPatchedService,
  SystemdServiceList,
  SystemdServiceSpec,
  SystemdServiceStatus,
  UserSpec,
  VmInfo,
  VmList,
  VmState,
} from "@capsule/contract/schemas";

/**
 * Options of `vms.create()`: the parts of the create request Capsule supports. `{}` boots the
 * base image; `spec` is ensured first (built, or its cached snapshot reused) and the VM boots
 * from its snapshot. From a memory snapshot the VM resumes its processes; `memory: false` boots
 * its disk only.
 */
export type CreateVmOptions = Pick<
  CreateVmRequest,
  "snapshotId" | "name" | "idleTimeoutSeconds" | "users" | "groups" | "vcpuCount" | "memSizeGb" | "rootfsSizeGb" | "additionalFiles" | "systemd" | "memory"
> & { spec?: VmSpec };

/**
 * Options of `vm.exec()`: the exec request, with `stdin` as bytes or text (the SDK sends it
 * base64). `env` and `stdin` are Capsule extensions of Freestyle's exec.
 */
export type ExecOptions = Omit<ExecRequest, "stdin"> & {
  /**
   * The command's whole input (a string is sent as UTF-8), then EOF; at most 1 MiB (the server's
   * `MAX_EXEC_STDIN_BYTES`). Absent: stdin is at EOF from the start.
   */
  stdin?: string | Uint8Array;
};

/** `fs.stat()`'s result (same fields as the freestyle client; computed from `stat` in the VM). */
export interface FileStat {
  /** Bytes. */
  size: number;
  isFile: boolean;
  isDirectory: boolean;
  isSymlink: boolean;
  /** Octal, e.g. `644`. */
  permissions: string;
  owner: string;
  group: string;
  /** Modification time as `stat` prints it. */
  modified: string;
}

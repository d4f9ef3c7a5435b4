/**
 * Request and response shapes of the Capsule API (Freestyle v1 wire format). They are the API
 * contract's own types (`@capsule/contract`, inferred from the schemas the server validates
 * with), imported as types only, so the SDK loads no schema code at run time.
 * @module
 */
import type { CreateVmRequest, ExecRequest } from "@capsule/contract/schemas";

export type {
  DirEntry,
  ExecResult,
  GroupSpec,
  PtySessionInfo,
  SnapshotInfo,
  SnapshotList,
  SnapshotResult,
  UserSpec,
  VmInfo,
  VmList,
  VmState,
} from "@capsule/contract/schemas";

/** Options of `vms.create()`: the parts of the create request Capsule supports. `{}` boots the base image. */
export type CreateVmOptions = Pick<
  CreateVmRequest,
  "snapshotId" | "name" | "idleTimeoutSeconds" | "users" | "groups" | "vcpuCount" | "memSizeGb" | "rootfsSizeGb" | "additionalFiles"
>;

/** Options of `vm.exec()`: the exec request. */
export type ExecOptions = ExecRequest;

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

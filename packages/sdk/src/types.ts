/** Request and response shapes of the Capsule API (Freestyle v1 wire format). @module */

/** VM states the server reports. */
export type VmState = "starting" | "running" | "suspending" | "suspended" | "stopped";

/** A Linux user created in the VM when it is created. */
export interface CreateUserSpec {
  /** Login name, `[a-z_][a-z0-9_-]{0,31}`. */
  name: string;
  /** Numeric uid; default: the next free one. */
  uid?: number;
  /** Supplementary groups (must exist or be listed in `groups`). */
  groups?: string[];
  /** Home directory; default `/home/<name>`. */
  home?: string;
  /** Login shell; default `/bin/bash` when present. */
  shell?: string;
  /** Comment field of /etc/passwd. */
  gecos?: string;
  /** Create a system account. Default false. */
  system?: boolean;
}

/** Options of `vms.create()`. Every field is optional; `{}` boots the base image. */
export interface CreateVmOptions {
  /** Boot from this snapshot instead of the base image. */
  snapshotId?: string | null;
  /** A label for the VM. */
  name?: string | null;
  /**
   * Suspend the VM after this many seconds without activity. `null`: never. Omitted: the
   * server's default (300 s unless configured).
   */
  idleTimeoutSeconds?: number | null;
  /** Linux users to create before the call returns. */
  users?: CreateUserSpec[];
  /** Linux groups to create before the users. */
  groups?: Array<{ name: string; gid?: number; system?: boolean }>;
  /** CPU quota, in cores. Default: the server's (1). */
  vcpuCount?: number;
  /** Memory limit, in GB. Default: the server's (2). */
  memSizeGb?: number;
  /** Writable disk size, in GB. Default: the server's (10). */
  rootfsSizeGb?: number;
  /** Files written before the call returns, by absolute path. */
  additionalFiles?: Record<string, { content: string; encoding?: "utf-8" | "base64"; executable?: boolean }>;
}

/** A VM as `vms.list()` and `vm.getInfo()` describe it. */
export interface VmSummary {
  id: string;
  name: string | null;
  state: VmState;
  /** ISO 8601. */
  createdAt: string;
  snapshotId: string | null;
  idleTimeoutSeconds: number | null;
  sizing: { vcpuCount: number; memSizeMib: number; rootfsSizeMb: number };
}

export interface VmList {
  vms: VmSummary[];
  totalCount: number;
  runningCount: number;
  startingCount: number;
  suspendingCount: number;
  suspendedCount: number;
  stoppedCount: number;
}

/** `vm.exec()`'s result. A non-zero exit is not an error: check `statusCode`. */
export interface ExecResult {
  stdout: string | null;
  stderr: string | null;
  /** Exit status; 128+n when the command was killed by signal n. */
  statusCode: number | null;
}

/** Options of `vm.exec()`. */
export interface ExecOptions {
  /** Command line, run through `/bin/sh -c` (multi-line scripts, pipes and `&&` work). */
  command: string;
  /** Kill the command after this many milliseconds and throw EXEC_TIMED_OUT. Default: no limit. */
  timeoutMs?: number | null;
  /** Legacy Freestyle terminal name; ignored by Capsule. */
  terminal?: string | null;
}

export interface SnapshotResult {
  snapshotId: string;
  sourceVmId: string;
  sourceVmInstanceId?: string | null;
}

export interface SnapshotInfo {
  snapshotId: string;
  name: string | null;
  state: "ready";
  sourceVmId: string | null;
  accountId: string;
  /** ISO 8601. */
  createdAt: string;
  sizeBytes: number;
  deleted: boolean;
}

export interface SnapshotList {
  snapshots: SnapshotInfo[];
  totalCount: number;
}

/** A directory entry of `fs.readDir()`. */
export interface DirEntry {
  name: string;
  kind: "file" | "directory";
}

/** `fs.stat()`'s result (same fields as the freestyle client). */
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

/** A PTY session as `vm.pty.list()` reports it. */
export interface PtySessionInfo {
  sessionId: string;
  running: boolean;
  exitCode: number | null;
  exitedAtMs: number | null;
  cols: number;
  rows: number;
  exec: string | null;
  createdAtMs: number;
  attachedCount: number;
  user: string | null;
  suspended: boolean;
}

/**
 * @capsule/sdk — TypeScript client for Capsule. The VM API of the freestyle 0.1.x client
 * (`import { freestyle } from "@capsule/sdk"` runs its code unchanged), plus streaming
 * `vm.spawn()` and streamed large files.
 * @module
 */
export { Capsule, Capsule as Freestyle, capsule, capsule as freestyle, Vms, Snapshots } from "./client.js";
export type { CapsuleOptions, CreateVmResult, EnsureSnapshotOptions, EnsureSnapshotResult } from "./client.js";
export { Build, Builds, BUILD_WAIT_INTERVAL_MS, BUILD_WAIT_TIMEOUT_MS } from "./builds.js";
export type { BuildWaitOptions } from "./builds.js";
export { VmSpec } from "./spec.js";
export type { GitRepoSpec, GitUser, VmServiceInput, VmSpecJson, VmSpecLayer, VmWaitForOptions } from "./spec.js";
export { Vm } from "./vm.js";
export type { ForkOptions, SnapshotOptions, StartVmOptions } from "./vm.js";
export { VmFs } from "./fs.js";
export type { ReadFileOptions, WriteFileOptions } from "./fs.js";
export { PtySession, VmPty } from "./pty.js";
export { SystemdService, VmSystemd } from "./systemd.js";
export type { ServiceLogsOptions, ServiceSelection } from "./systemd.js";
export type { PtyAttachOptions, PtyListeners, PtyOpenOptions, ReconnectOptions } from "./pty.js";
export type { SpawnedProcess, SpawnExit, SpawnOptions, SpawnSignal } from "./spawn.js";
export {
  API_ERROR_CODES,
  CLIENT_ERROR_CODES,
  CapsuleError,
  ConfigError,
  ConnectionError,
  ExecTimedOutError,
  FileNotFoundError,
  LimitError,
  SessionError,
  SnapshotNotFoundError,
  UnauthorizedError,
  UserNotFoundError,
  ValidationError,
  VmNotFoundError,
  isCapsuleError,
} from "./errors.js";
export type { ApiErrorCode, ClientErrorCode, ErrorCode } from "./errors.js";
export { LINUX_USER_HEADER } from "./transport.js";
export type { FetchLike } from "./transport.js";
export type {
  BuildInfo,
  BuildList,
  BuildListQuery,
  BuildPhase,
  BuildState,
  CreateVmOptions,
  EnsureSnapshotResponse,
  DirEntry,
  ExecOptions,
  ExecResult,
  FileStat,
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
} from "./types.js";
export {
  buildClaudeSnapshot,
  claudeCodeCacheDir,
  claudeCodeSpawner,
  claudeEnv,
  claudeJson,
  claudeSnapshotName,
  ensureClaudeCodeBinary,
  CLAUDE_CODE_PACKAGE,
  DEFAULT_CLAUDE_CODE_VERSION,
} from "./claude/index.js";
export type { ClaudeCodeSpawnerOptions, ClaudeSnapshot, ClaudeSnapshotOptions, ClaudeSpawnedProcess, ClaudeSpawnOptions } from "./claude/index.js";

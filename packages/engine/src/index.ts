/**
 * @capsule/engine — the host-side sandbox engine. Public surface; everything else is internal.
 * @module
 */
export { Engine, FORK_RESTORE_CONCURRENCY } from "./engine.js";
export type { CreateVmOpts, MemoryMode, MemorySnapshot, SnapshotRecord, VmInfo } from "./engine.js";
export { RECOVERY_PROBE_BUDGET_MS } from "./recovery.js";
export type { RecoveryReport } from "./recovery.js";
export { DEFAULT_LIMITS, DEFAULT_NETWORK } from "./config.js";
export type { EngineOptions, Egress, NetworkStack, RuntimeName, VmLimits } from "./config.js";
export type { EngineFeatures } from "./preflight.js";
export { EngineError, ErrorCode, isEngineError } from "./errors.js";
export { KeyedMutex } from "./mutex.js";
export { HOST_ALIAS_IPV4 } from "./net/firewall.js";
export { MAX_FIREWALL_RULES } from "./net/policy.js";
export type { FirewallMatch, FirewallPolicy, FirewallProtocol, FirewallRule } from "./net/policy.js";
export type { VmState } from "./lifecycle.js";
export { GuestOps, PtyAttachment } from "./guest-ops.js";
export type { BufferedExecOpts, ExecOpts, ExecResult, ExitInfo, GuestProcess, PtyOpenOpts } from "./guest-ops.js";
export type { DirEntry, PtySessionInfo, ServiceAction, ServiceLogEntry, ServiceLogStream, ServiceSpec, ServiceStatus, StatInfo } from "@capsule/agent-protocol";
export { DEFAULT_ENV_FILE_IN_VM, DEFAULT_WORKDIR_FILE_IN_VM, ProtocolError, SERVICE_ACTIONS, parseServiceSpec, parseSignalName, serviceNameOf, serviceNameProblem } from "@capsule/agent-protocol";
export type { SignalName } from "@capsule/agent-protocol";

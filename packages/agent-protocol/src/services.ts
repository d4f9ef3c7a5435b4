/**
 * Services: long-running or one-shot commands the agent supervises (the Freestyle `systemd`
 * API, without systemd). Definitions persist inside the VM, so a stop/start or a snapshot keeps
 * them; enabled ones start whenever the agent does.
 *
 * | op            | request                              | reply                                   |
 * |---------------|--------------------------------------|-----------------------------------------|
 * | `svc.define`  | {@link ServiceSpec}s, replace, start | `services` (their statuses)             |
 * | `svc.get`     | name                                 | `service.spec`                          |
 * | `svc.list`    | –                                    | `services`                              |
 * | `svc.status`  | name                                 | `service`                               |
 * | `svc.control` | name, start / stop / restart         | `service` (once the action settled)     |
 * | `svc.delete`  | name                                 | `ok` (stopped first)                    |
 * | `svc.logs`    | name, lines, sinceMs                 | `logs`, oldest first                    |
 *
 * A name the VM has no service of is the agent error `SERVICE_NOT_FOUND`.
 * @module
 */

/**
 * A service's name is its definition's file name inside the VM: letters, digits and `_.@:-`,
 * not starting with `.` or `-`, so no `/`, no `..`, nothing hidden.
 */
export const SERVICE_NAME_RE = /^[A-Za-z0-9_@:][A-Za-z0-9_.@:-]*$/;
export const MAX_SERVICE_NAME_LENGTH = 128;
/** A unit name ending like this names the service itself ("web.service" is "web"). */
export const SERVICE_UNIT_SUFFIX = ".service";
/** Targets (`multi-user.target`, `network.target`) are always reached: nothing waits on them. */
export const TARGET_UNIT_SUFFIX = ".target";

/** Bounds on one definition, so neither side holds more than this for one service. */
export const SERVICE_LIMITS = {
  execCommands: 32,
  commandBytes: 64 * 1024,
  envVars: 256,
  envBytes: 64 * 1024,
  /** Names in after, requires, onFailure, wantedBy each. */
  dependencies: 64,
  /** Services one `svc.define` may carry. */
  perDefine: 64,
  /** Services a VM may have. */
  perVm: 256,
  /** timeoutSec, restartSec, startLimitIntervalSec. */
  seconds: 7 * 24 * 3600,
  startLimitBurst: 1000,
} as const;

/** Most log lines one `svc.logs` answers (its reply is cut earlier when it grows past the bytes below). */
export const MAX_SERVICE_LOG_LINES = 1000;
/**
 * Characters of messages one `svc.logs` reply carries at most: inside the JSON frame limit even
 * if every one is a control character JSON escapes in 6 bytes.
 */
export const MAX_SERVICE_LOG_REPLY_BYTES = 512 * 1024;
/** A logged line longer than this is split into lines of this many bytes. */
export const MAX_SERVICE_LOG_LINE_BYTES = 4096;

/**
 * How long `svc.define` (with start) and `svc.control` wait for their services to settle (a
 * service started, a oneshot done) before answering with the state they are in; a longer start
 * goes on in the VM. The host's deadline for these ops is this plus {@link MAX_SERVICE_STOP_GRACE_MS}
 * plus its margin.
 */
export const SERVICE_SETTLE_WAIT_MS = 20_000;
/** A stop sends SIGTERM, then SIGKILL after the service's timeoutSec, at most this long. */
export const MAX_SERVICE_STOP_GRACE_MS = 20_000;

export const SERVICE_MODES = ["service", "oneshot"] as const;
export type ServiceMode = (typeof SERVICE_MODES)[number];

export const RESTART_POLICIES = ["no", "on-failure", "always", "on-abnormal"] as const;
export type RestartPolicyName = (typeof RESTART_POLICIES)[number];

export interface RestartPolicy {
  policy: RestartPolicyName;
  /** Delay before a restart (systemd's RestartSec, default 0.1 s). */
  restartSec?: number;
  /** At most this many starts within startLimitIntervalSec, or the service fails (default 5 in 10 s). */
  startLimitBurst?: number;
  startLimitIntervalSec?: number;
}

/** One service's definition, as stored in the VM. Dependency names are bare service names or `*.target`. */
export interface ServiceSpec {
  name: string;
  mode: ServiceMode;
  /** Command lines, run one after another through `/bin/sh -c`; the first that fails fails the run. */
  exec: string[];
  env?: Record<string, string>;
  /** Linux user (default root) and group (default the user's). */
  user?: string;
  group?: string;
  /** Absolute working directory (default /). */
  workdir?: string;
  after?: string[];
  requires?: string[];
  onFailure?: string[];
  wantedBy?: string[];
  /** Started whenever the agent starts (default true). */
  enable: boolean;
  /**
   * oneshot: the run's time limit; service: the stop grace, and with readySignal the time READY=1
   * may take. 0: none (stop: the default grace); absent: the defaults.
   */
  timeoutSec?: number;
  /** oneshot: remove the definition once a run succeeded. */
  deleteAfterSuccess?: boolean;
  /** oneshot: stay active (exited) after a successful run (default true). */
  remainAfterExit?: boolean;
  /**
   * service: systemd's Type=notify. The run gets NOTIFY_SOCKET and is active only once it sent
   * READY=1. Agents older than this field would ignore it (and watchdogSec), so the host defines
   * such a service only in an agent whose version reply lists AGENT_FEATURES.serviceNotify.
   */
  readySignal?: boolean;
  /** service: systemd's WatchdogSec=. Once active, a run that sends no WATCHDOG=1 for this long is aborted. */
  watchdogSec?: number;
  restart?: RestartPolicy;
}

export const SERVICE_ACTIVE_STATES = ["active", "inactive", "failed", "activating", "deactivating"] as const;
export type ServiceActiveState = (typeof SERVICE_ACTIVE_STATES)[number];
export const SERVICE_SUB_STATES = ["running", "exited", "dead", "failed", "start", "auto-restart", "stop-sigterm"] as const;
export type ServiceSubState = (typeof SERVICE_SUB_STATES)[number];
/** Why the last run ended as it did (systemd's Result=). */
export const SERVICE_RESULTS = ["success", "exit-code", "signal", "timeout", "watchdog", "start-limit-hit", "resources", "dependency"] as const;
export type ServiceResult = (typeof SERVICE_RESULTS)[number];

export interface ServiceStatus {
  name: string;
  /** The Linux user it runs as. */
  user: string;
  enabled: boolean;
  activeState: ServiceActiveState;
  subState: ServiceSubState;
  result: ServiceResult;
  /** The running command's process (group leader), while there is one. */
  pid: number | null;
  /** Automatic restarts since the service was last started by hand or at boot. */
  restarts: number;
}

export const SERVICE_ACTIONS = ["start", "stop", "restart"] as const;
export type ServiceAction = (typeof SERVICE_ACTIONS)[number];

export const SERVICE_LOG_STREAMS = ["stdout", "stderr", "supervisor"] as const;
export type ServiceLogStream = (typeof SERVICE_LOG_STREAMS)[number];

/**
 * The latest log time a reply may carry: ECMAScript's last representable Date (8.64e15 ms, year
 * 275760), so every entry's time can become an ISO string on the host.
 */
export const MAX_SERVICE_LOG_TIME_MS = 8.64e15;

export interface ServiceLogEntry {
  /** Milliseconds since the epoch, at most {@link MAX_SERVICE_LOG_TIME_MS}. */
  timeMs: number;
  stream: ServiceLogStream;
  message: string;
}

export type ServiceRequest =
  | { op: "svc.define"; services: ServiceSpec[]; replace: boolean; start: boolean }
  | { op: "svc.list" }
  | { op: "svc.get" | "svc.status" | "svc.delete"; name: string }
  | { op: "svc.control"; name: string; action: ServiceAction }
  | { op: "svc.logs"; name: string; lines?: number; sinceMs?: number };

export type ServiceReply =
  | { type: "services"; services: ServiceStatus[] }
  | { type: "service"; status: ServiceStatus }
  | { type: "service.spec"; service: ServiceSpec }
  | { type: "logs"; entries: ServiceLogEntry[] };

/** "web.service" and "web" both name the service "web". */
export function serviceNameOf(unit: string): string {
  return unit.endsWith(SERVICE_UNIT_SUFFIX) ? unit.slice(0, -SERVICE_UNIT_SUFFIX.length) : unit;
}

/** Why `name` (already through {@link serviceNameOf}) cannot be a service's name, or undefined when it can. */
export function serviceNameProblem(name: string): string | undefined {
  if (name === "") return "a service name must not be empty";
  if (name.length > MAX_SERVICE_NAME_LENGTH) return `a service name is at most ${MAX_SERVICE_NAME_LENGTH} characters`;
  if (!SERVICE_NAME_RE.test(name)) return "a service name is letters, digits and _.@:- and must not start with '.' or '-'";
  if (name.endsWith(TARGET_UNIT_SUFFIX) || name.endsWith(SERVICE_UNIT_SUFFIX)) return `a service name must not end in ${TARGET_UNIT_SUFFIX} or ${SERVICE_UNIT_SUFFIX} (after one ${SERVICE_UNIT_SUFFIX} is taken off)`;
  return undefined;
}

/**
 * Schemas of the Freestyle `vm.systemd.*` routes (`/v1/vms/{vm_id}/systemd/...`) and of the
 * create field `systemd`, with the official client's field names. The fields are checked for
 * shape here; the service rules (names that are file names, the bounds per service) are the agent
 * protocol's, applied by the server when it maps a spec onto it.
 * @module
 */
import { z } from "zod";

/** The most services one request (a create, a start/stop/restart) may name. */
export const MAX_SERVICES_PER_REQUEST = 64;

const UnitNames = z.array(z.string().max(256)).max(64).nullish();
const LinuxName = z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, "must be a Linux user or group name: [a-z_][a-z0-9_-]{0,31}");
const Seconds = z.number().min(0).max(7 * 24 * 3600);

export const SystemdRestartPolicy = z
  .object({
    /** systemd's Restart=. */
    policy: z.enum(["no", "on-failure", "always", "on-abnormal"]),
    /** Delay before a restart; at least 0.1 s is waited whatever this says. */
    restartSec: Seconds.nullish(),
    /** More starts than this within startLimitIntervalSec fail the service (default 5 in 10 s). */
    startLimitBurst: z.number().int().min(1).max(1000).nullish(),
    /** 0: no start limit, but at most one restart a second. */
    startLimitIntervalSec: Seconds.nullish(),
  })
  .meta({ id: "SystemdRestartPolicy" });

const serviceFields = {
  /** Unique slug; the unit is "<name>.service" (a trailing ".service" is taken off). */
  name: z.string().min(1).max(256),
  /** "service" (long-running) or "oneshot" (run and exit). Default "service". */
  mode: z.enum(["oneshot", "service"]).nullish(),
  /** Command lines run one after another through `/bin/sh -c`. */
  exec: z.array(z.string()).min(1).max(32),
  env: z.record(z.string(), z.string()).nullish(),
  /** Linux user to run as (default: the request's Linux user, else root). */
  user: LinuxName.nullish(),
  group: LinuxName.nullish(),
  /** Absolute working directory (default /). */
  workdir: z.string().regex(/^\//, "must be an absolute path").nullish(),
  after: UnitNames,
  requires: UnitNames,
  onFailure: UnitNames,
  wantedBy: UnitNames,
  /** Start at every boot of the VM (default true); an enabled service is started when created. */
  enable: z.boolean().nullish(),
  /**
   * oneshot: the run's time limit; both modes: the stop grace (at most 20 s); with readySignal:
   * how long READY=1 may take (default 20 s, 0 for no limit).
   */
  timeoutSec: Seconds.nullish(),
  deleteAfterSuccess: z.boolean().nullish(),
  /** oneshot: stay active (exited) after a successful run (default true). */
  remainAfterExit: z.boolean().nullish(),
  /**
   * systemd's Type=notify (mode service): the service gets NOTIFY_SOCKET and is active once it
   * sent READY=1; until then activating, and dependents wait for it.
   */
  readySignal: z.boolean().nullish(),
  /**
   * systemd's WatchdogSec= (mode service): WATCHDOG_USEC and WATCHDOG_PID in its env; once active,
   * no WATCHDOG=1 for this long aborts it (SIGABRT, result watchdog) and the restart policy applies.
   */
  watchdogSec: Seconds.nullish(),
  restartPolicy: SystemdRestartPolicy.nullish(),
};

/** `POST /v1/vms/{vm_id}/systemd/services`, and each of `systemd.services` on create. */
export const SystemdServiceSpec = z.object(serviceFields).meta({ id: "SystemdServiceSpec" });
export type SystemdServiceSpec = z.infer<typeof SystemdServiceSpec>;

/** Each of `systemd.patchedServices` on create: fields replacing those of a service the VM has (from its snapshot). */
export const SystemdPatchedService = z.object({ ...serviceFields, exec: serviceFields.exec.nullish() }).meta({ id: "SystemdPatchedService" });
export type SystemdPatchedService = z.infer<typeof SystemdPatchedService>;

/** The create field `systemd`. */
export const SystemdConfig = z
  .object({
    services: z.array(SystemdServiceSpec).max(MAX_SERVICES_PER_REQUEST).nullish(),
    patchedServices: z.array(SystemdPatchedService).max(MAX_SERVICES_PER_REQUEST).nullish(),
  })
  .meta({ id: "SystemdConfig" });
export type SystemdConfig = z.infer<typeof SystemdConfig>;

/** A service's state in systemd's terms (`loadState` is `loaded`: a service that does not exist is SERVICE_NOT_FOUND). */
export const SystemdServiceStatus = z
  .object({
    name: z.string(),
    activeState: z.string(),
    subState: z.string(),
    loadState: z.string(),
    description: z.string(),
    /** Capsule's: how the last run ended (systemd's Result=: success, exit-code, signal, timeout, watchdog, start-limit-hit, resources, dependency). */
    result: z.string(),
    /** Capsule's: the Linux user it runs as, whether it starts at boot, its process, its automatic restarts. */
    user: z.string(),
    enabled: z.boolean(),
    pid: z.number().nullable(),
    restarts: z.number(),
  })
  .meta({ id: "SystemdServiceStatus" });
export type SystemdServiceStatus = z.infer<typeof SystemdServiceStatus>;

/** `GET /v1/vms/{vm_id}/systemd/services`: each item carries the status fields too (Capsule's). */
export const SystemdServiceList = z.object({ services: z.array(SystemdServiceStatus) }).meta({ id: "SystemdServiceList" });
export type SystemdServiceList = z.infer<typeof SystemdServiceList>;

export const SystemdCreateResult = z.object({ success: z.boolean(), message: z.string(), serviceName: z.string() }).meta({ id: "SystemdCreateResult" });
export type SystemdCreateResult = z.infer<typeof SystemdCreateResult>;

export const SystemdDeleteResult = z.object({ success: z.boolean(), message: z.string() }).meta({ id: "SystemdDeleteResult" });
export type SystemdDeleteResult = z.infer<typeof SystemdDeleteResult>;

/** `GET .../logs`: oldest first. `priority` is syslog's (6 stdout, 3 stderr, 5 the supervisor's own lines). */
export const SystemdLogs = z
  .object({ logs: z.array(z.object({ message: z.string(), timestamp: z.string(), priority: z.string().nullable(), unit: z.string().nullable() })) })
  .meta({ id: "SystemdLogs" });
export type SystemdLogs = z.infer<typeof SystemdLogs>;

/** The most lines `GET .../logs` answers (`lines`, default 100). */
export const MAX_SYSTEMD_LOG_LINES = 1000;
export const DEFAULT_SYSTEMD_LOG_LINES = 100;

/** `POST /v1/vms/{vm_id}/systemd/{start|stop|restart}`. */
export const SystemdControlRequest = z
  .object({ services: z.array(z.object({ id: z.string().min(1).max(256) })).min(1).max(MAX_SERVICES_PER_REQUEST) })
  .meta({ id: "SystemdControlRequest" });
export type SystemdControlRequest = z.infer<typeof SystemdControlRequest>;

export const SystemdControlResult = z
  .object({ results: z.array(z.object({ serviceId: z.string(), success: z.boolean(), message: z.string() })) })
  .meta({ id: "SystemdControlResult" });
export type SystemdControlResult = z.infer<typeof SystemdControlResult>;

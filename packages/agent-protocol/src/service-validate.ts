/**
 * Validators of the service messages ({@link ServiceRequest}, {@link ServiceReply}), both
 * directions; `validate.ts` routes the `svc.*` ops and the service replies here. Every bound of
 * {@link SERVICE_LIMITS} is checked, so neither side stores or holds more than that per service.
 * @module
 */
import { absPath, array, bool, fail, finite, object, oneOf, optBool, optEnv, optStr, optUint, str, strings, uint, type Fields } from "./fields.js";
import {
  MAX_SERVICE_LOG_LINES,
  MAX_SERVICE_LOG_TIME_MS,
  RESTART_POLICIES,
  SERVICE_ACTIONS,
  SERVICE_ACTIVE_STATES,
  SERVICE_LIMITS,
  SERVICE_LOG_STREAMS,
  SERVICE_MODES,
  SERVICE_RESULTS,
  SERVICE_SUB_STATES,
  TARGET_UNIT_SUFFIX,
  serviceNameOf,
  serviceNameProblem,
  type RestartPolicy,
  type ServiceLogEntry,
  type ServiceReply,
  type ServiceRequest,
  type ServiceSpec,
  type ServiceStatus,
} from "./services.js";

/** A Linux user or group name, as the VM's /etc/passwd and /etc/group hold them. */
const LINUX_NAME_RE = /^[a-z_][a-z0-9_-]{0,31}\$?$/;

function serviceName(value: string, what: string): string {
  const name = serviceNameOf(value);
  const problem = serviceNameProblem(name);
  if (problem !== undefined) fail(`${what}: ${problem}, got ${JSON.stringify(value.slice(0, 200))}`);
  return name;
}

function name(o: Fields): string {
  return serviceName(str(o, "name"), `"name"`);
}

/** A unit a service names: another service (bare, `.service` taken off) or a `*.target`. */
function unitNames(o: Fields, key: string): string[] | undefined {
  if (o[key] === undefined) return undefined;
  const names = strings(o, key);
  if (names.length > SERVICE_LIMITS.dependencies) fail(`"${key}" may name at most ${SERVICE_LIMITS.dependencies} units`);
  return names.map((n) => (n.endsWith(TARGET_UNIT_SUFFIX) && serviceNameProblem(n.slice(0, -TARGET_UNIT_SUFFIX.length)) === undefined ? n : serviceName(n, `"${key}"`)));
}

function linuxName(o: Fields, key: string): string | undefined {
  const v = optStr(o, key);
  if (v !== undefined && !LINUX_NAME_RE.test(v)) fail(`"${key}" must be a Linux user or group name`);
  return v;
}

function seconds(o: Fields, key: string): number | undefined {
  if (o[key] === undefined) return undefined;
  const v = finite(o, key);
  if (v < 0 || v > SERVICE_LIMITS.seconds) fail(`"${key}" must be from 0 to ${SERVICE_LIMITS.seconds} seconds`);
  return v;
}

function restartPolicy(raw: unknown): RestartPolicy {
  const o = object(raw, `"restart"`);
  const burst = optUint(o, "startLimitBurst", SERVICE_LIMITS.startLimitBurst);
  const restartSec = seconds(o, "restartSec");
  const interval = seconds(o, "startLimitIntervalSec");
  return {
    policy: oneOf(o, "policy", RESTART_POLICIES),
    ...(restartSec !== undefined ? { restartSec } : {}),
    ...(burst !== undefined ? { startLimitBurst: burst } : {}),
    ...(interval !== undefined ? { startLimitIntervalSec: interval } : {}),
  };
}

function exec(o: Fields): string[] {
  const commands = strings(o, "exec");
  if (commands.length === 0 || commands.length > SERVICE_LIMITS.execCommands) fail(`"exec" must hold 1 to ${SERVICE_LIMITS.execCommands} command lines`);
  for (const c of commands) if (c.trim() === "" || Buffer.byteLength(c) > SERVICE_LIMITS.commandBytes) fail(`each "exec" command line must be non-blank and at most ${SERVICE_LIMITS.commandBytes} bytes`);
  return commands;
}

function env(o: Fields): Record<string, string> | undefined {
  const e = optEnv(o, "env");
  if (e === undefined) return undefined;
  const entries = Object.entries(e);
  if (entries.length > SERVICE_LIMITS.envVars) fail(`"env" may hold at most ${SERVICE_LIMITS.envVars} variables`);
  if (entries.reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0) > SERVICE_LIMITS.envBytes) fail(`"env" may hold at most ${SERVICE_LIMITS.envBytes} bytes`);
  return e;
}

/** One service definition, from the host or from the VM's own store (which guest root may have edited). */
export function parseServiceSpec(raw: unknown): ServiceSpec {
  const o = object(raw, "a service");
  const optional = {
    env: env(o),
    user: linuxName(o, "user"),
    group: linuxName(o, "group"),
    workdir: o.workdir === undefined ? undefined : absPath(o, "workdir"),
    after: unitNames(o, "after"),
    requires: unitNames(o, "requires"),
    onFailure: unitNames(o, "onFailure"),
    wantedBy: unitNames(o, "wantedBy"),
    timeoutSec: seconds(o, "timeoutSec"),
    deleteAfterSuccess: optBool(o, "deleteAfterSuccess"),
    remainAfterExit: optBool(o, "remainAfterExit"),
    readySignal: optBool(o, "readySignal"),
    watchdogSec: seconds(o, "watchdogSec"),
    restart: o.restart === undefined ? undefined : restartPolicy(o.restart),
  };
  const spec: ServiceSpec = { name: name(o), mode: oneOf(o, "mode", SERVICE_MODES), exec: exec(o), enable: bool(o, "enable") };
  // systemd's Type=notify and WatchdogSec= are for a long-running main process, not a oneshot's.
  if (spec.mode === "oneshot" && (optional.readySignal || optional.watchdogSec)) fail(`"readySignal" and "watchdogSec" apply to mode "service" only`);
  // WATCHDOG_USEC is whole microseconds: below 1 ms the service would read "0" (no watchdog) while the agent aborts it at once.
  if (optional.watchdogSec !== undefined && optional.watchdogSec > 0 && optional.watchdogSec < 0.001) fail(`"watchdogSec" must be 0 or at least 0.001`);
  for (const [key, value] of Object.entries(optional)) if (value !== undefined) Object.assign(spec, { [key]: value });
  return spec;
}

/** The `svc.*` requests; `op` is already known to start with `svc.`. */
export function parseServiceRequest(o: Fields): ServiceRequest {
  const op = o.op;
  switch (op) {
    case "svc.define": {
      const services = array(o, "services");
      if (services.length === 0 || services.length > SERVICE_LIMITS.perDefine) fail(`"services" must hold 1 to ${SERVICE_LIMITS.perDefine} services`);
      const specs = services.map(parseServiceSpec);
      if (new Set(specs.map((s) => s.name)).size !== specs.length) fail(`"services" names a service twice`);
      return { op, services: specs, replace: bool(o, "replace"), start: bool(o, "start") };
    }
    case "svc.list":
      return { op };
    case "svc.get":
    case "svc.status":
    case "svc.delete":
      return { op, name: name(o) };
    case "svc.control":
      return { op, name: name(o), action: oneOf(o, "action", SERVICE_ACTIONS) };
    case "svc.logs": {
      const lines = optUint(o, "lines", MAX_SERVICE_LOG_LINES);
      const sinceMs = optUint(o, "sinceMs");
      return { op, name: name(o), ...(lines !== undefined ? { lines } : {}), ...(sinceMs !== undefined ? { sinceMs } : {}) };
    }
    default:
      return fail(`unknown op ${JSON.stringify(op)}`);
  }
}

function serviceStatus(raw: unknown): ServiceStatus {
  const o = object(raw, "a service status");
  const pid = o.pid === null ? null : uint(o, "pid");
  return {
    name: name(o),
    user: str(o, "user"),
    enabled: bool(o, "enabled"),
    activeState: oneOf(o, "activeState", SERVICE_ACTIVE_STATES),
    subState: oneOf(o, "subState", SERVICE_SUB_STATES),
    result: oneOf(o, "result", SERVICE_RESULTS),
    pid,
    restarts: uint(o, "restarts"),
  };
}

function logEntry(raw: unknown): ServiceLogEntry {
  const o = object(raw, "a log entry");
  return { timeMs: uint(o, "timeMs", MAX_SERVICE_LOG_TIME_MS), stream: oneOf(o, "stream", SERVICE_LOG_STREAMS), message: str(o, "message") };
}

/** The service replies; undefined for any other type (the caller's to check). */
export function parseServiceReply(o: Fields): ServiceReply | undefined {
  switch (o.type) {
    case "services":
      return { type: "services", services: array(o, "services").map(serviceStatus) };
    case "service":
      return { type: "service", status: serviceStatus(o.status) };
    case "service.spec":
      return { type: "service.spec", service: parseServiceSpec(o.service) };
    case "logs": {
      const entries = array(o, "entries");
      if (entries.length > MAX_SERVICE_LOG_LINES) fail(`"entries" holds more than ${MAX_SERVICE_LOG_LINES} lines`);
      return { type: "logs", entries: entries.map(logEntry) };
    }
    default:
      return undefined;
  }
}

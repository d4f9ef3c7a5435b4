/**
 * Freestyle `systemd` services onto the guest agent's supervisor: specs mapped and checked with
 * the agent protocol's own validator (one set of rules: names that are file names, bounds per
 * service), statuses and log lines mapped back, and the Linux-user scope of a request.
 * @module
 */
import { ProtocolError, parseServiceSpec, serviceNameOf, serviceNameProblem, type ServiceLogEntry, type ServiceSpec, type ServiceStatus } from "@capsule/engine";
import { ApiError } from "./errors.js";
import type { VmGuest } from "./guest/gateway.js";
import type { SystemdLogs, SystemdPatchedService, SystemdServiceSpec, SystemdServiceStatus } from "./schemas.js";

/** syslog priorities, as journald gives them: stdout info, stderr err, the supervisor's notices. */
const PRIORITIES = { stdout: "6", stderr: "3", supervisor: "5" } as const;

/** Drops null and undefined fields (the client sends null for "not set"). */
function present<T extends object>(o: T): Partial<{ [K in keyof T]: NonNullable<T[K]> }> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null && v !== undefined)) as Partial<{ [K in keyof T]: NonNullable<T[K]> }>;
}

/**
 * A Freestyle service spec as the agent's. `user` defaults to the request's Linux user;
 * `readySignal: false` and `watchdogSec: 0` (systemd's defaults) are left out, so a definition
 * without sd_notify is stored as before. Anything the agent protocol refuses (a name with a path
 * character, an oversized field, readySignal on a oneshot) is a VALIDATION_ERROR.
 */
export function toServiceSpec(s: SystemdServiceSpec | SystemdPatchedService, requestUser: string | undefined): ServiceSpec {
  const { readySignal, watchdogSec, restartPolicy, mode, enable, user, ...rest } = present(s);
  const raw = {
    ...rest,
    mode: mode ?? "service",
    enable: enable ?? true,
    ...(user ?? requestUser ? { user: user ?? requestUser } : {}),
    ...(readySignal ? { readySignal } : {}),
    ...(watchdogSec ? { watchdogSec } : {}),
    ...(restartPolicy ? { restart: present(restartPolicy) } : {}),
  };
  try {
    return parseServiceSpec(raw);
  } catch (err) {
    if (err instanceof ProtocolError) throw new ApiError("VALIDATION_ERROR", `service ${JSON.stringify(s.name)}: ${err.message}`);
    throw err;
  }
}

/**
 * A scoped request (the Linux-user header: "act as this user") defines services that run as
 * that user only: with `user: root` (or a group of root's) it would run what the same request
 * could not exec. A group other than the user's own name is refused for the same reason (the
 * host cannot see the user's memberships).
 */
export function checkScopedSpec(spec: ServiceSpec, requestUser: string | undefined): void {
  if (requestUser === undefined) return;
  if ((spec.user ?? "root") !== requestUser) throw new ApiError("VALIDATION_ERROR", `service ${JSON.stringify(spec.name)}: a request as ${requestUser} defines services running as ${requestUser} only, not ${spec.user ?? "root"}`);
  if (spec.group !== undefined && spec.group !== requestUser) throw new ApiError("VALIDATION_ERROR", `service ${JSON.stringify(spec.name)}: a request as ${requestUser} cannot set group ${JSON.stringify(spec.group)}`);
}

/** The Freestyle spec of an agent's definition: what `patchedServices` fields apply to. */
function fromServiceSpec(spec: ServiceSpec): SystemdServiceSpec {
  const { restart, ...rest } = spec;
  return { ...rest, ...(restart ? { restartPolicy: restart } : {}) };
}

/** A patch over a definition: each field it gives replaces the definition's; null clears one. */
export function patchServiceSpec(current: ServiceSpec, patch: SystemdPatchedService): ServiceSpec {
  const merged: Record<string, unknown> = { ...fromServiceSpec(current) };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete merged[key];
    else if (value !== undefined) merged[key] = value;
  }
  return toServiceSpec(merged as SystemdServiceSpec, current.user);
}

/** A service id from a path or a control request ("web" or "web.service"), checked before it goes anywhere. */
export function serviceId(id: string): string {
  const name = serviceNameOf(id);
  const problem = serviceNameProblem(name);
  if (problem !== undefined) throw new ApiError("VALIDATION_ERROR", `service id ${JSON.stringify(id.slice(0, 200))}: ${problem}`);
  return name;
}

export function statusView(s: ServiceStatus): SystemdServiceStatus {
  return { name: s.name, activeState: s.activeState, subState: s.subState, loadState: "loaded", description: `${s.name}.service`, result: s.result, user: s.user, enabled: s.enabled, pid: s.pid, restarts: s.restarts };
}

export function logsView(name: string, entries: ServiceLogEntry[]): SystemdLogs {
  return { logs: entries.map((e) => ({ message: e.message, timestamp: new Date(e.timeMs).toISOString(), priority: PRIORITIES[e.stream], unit: `${name}.service` })) };
}

/**
 * The service's status, seen from the request's Linux user: a scoped request (the client's
 * `vm.user(...)` handle) sees only that user's services; another's is SERVICE_NOT_FOUND.
 */
export async function scopedStatus(guest: VmGuest, name: string, requestUser: string | undefined): Promise<ServiceStatus> {
  const status = await guest.serviceStatus(name);
  if (requestUser !== undefined && status.user !== requestUser) throw notFound(name);
  return status;
}

export function notFound(name: string): ApiError {
  return new ApiError("SERVICE_NOT_FOUND", `no service ${JSON.stringify(name)} in the VM`);
}

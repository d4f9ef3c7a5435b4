/**
 * The console's HTTP client. Calls go to the same origin with the session cookie (HttpOnly: this
 * code never sees it) and the `X-Capsule-Console: 1` header the server requires of
 * cookie-authenticated requests (a cross-site form cannot send it). The API key is only ever
 * sent once, in the sign-in POST body. The API's shapes and codes are the contract's
 * (`@capsule/contract`, type-only imports: nothing of it is bundled).
 */
import type { ApiErrorCode } from "@capsule/contract/errors";
import type { BuildList, BuildPhase, BuildPhases, PortAccess, PortList, PortSummary, SnapshotInfo, SnapshotList, SystemdControlResult, SystemdLogs, SystemdServiceList, SystemdServiceStatus, VmInfo, VmList } from "@capsule/contract/schemas";

export type { BuildInfo, BuildPhase, DirEntry, DirListing, FileContent, PortSummary, PtySessionInfo, SnapshotInfo, SystemdLogs, SystemdServiceStatus, VmInfo, VmState } from "@capsule/contract/schemas";

/** A failed call: the API's code, or "ERROR" when the answer had none. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: ApiErrorCode | "ERROR",
    message: string,
  ) {
    super(message);
  }
}

export const SIGNED_OUT_EVENT = "capsule:signed-out";

export async function api<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
  const res = await fetch(path, {
    method,
    credentials: "same-origin",
    cache: "no-store",
    headers: { ...headers, "X-Capsule-Console": "1", ...(body !== undefined ? { "Content-Type": "application/json" } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let parsed: unknown = undefined;
  try {
    parsed = text ? JSON.parse(text) : {};
  } catch {
    parsed = { message: text };
  }
  if (!res.ok) {
    const b = (parsed ?? {}) as { code?: ApiErrorCode; message?: string };
    if (res.status === 401 && !path.startsWith("/console/api/session")) window.dispatchEvent(new Event(SIGNED_OUT_EVENT));
    throw new ApiError(res.status, b.code ?? "ERROR", b.message ?? `${res.status} ${res.statusText}`);
  }
  return parsed as T;
}

export const listVms = (): Promise<VmInfo[]> => api<VmList>("GET", "/v1/vms").then((r) => r.vms);
export const listSnapshots = (): Promise<SnapshotInfo[]> => api<SnapshotList>("GET", "/v1/vms/snapshots").then((r) => r.snapshots);
/** The account's newest builds (`GET /v1/vms/builds`, Capsule's) and one build's phases with their logs. */
export const listBuilds = (limit: number): Promise<BuildList> => api<BuildList>("GET", `/v1/vms/builds?limit=${limit}`);
export const buildPhases = (id: string): Promise<BuildPhase[]> => api<BuildPhases>("GET", `/v1/vms/builds/${encodeURIComponent(id)}/phases`).then((r) => r.phases);
export const vmPath = (id: string) => `/v1/vms/${encodeURIComponent(id)}`;
export const filePath = (id: string, p: string) => `${vmPath(id)}/files/${encodeURIComponent(p)}`;

/** The VM's public or shared ports (Capsule's preview routes), and one port's preview URL. */
export const listPorts = (id: string): Promise<PortSummary[]> => api<PortList>("GET", `${vmPath(id)}/ports`).then((r) => r.ports);
export const portAccess = (id: string, port: number): Promise<PortAccess> => api<PortAccess>("GET", `${vmPath(id)}/ports/${port}`);

/** The VM's services (`vm.systemd`), all Linux users' (the console sends no Linux-user header). */
export const listServices = (id: string): Promise<SystemdServiceStatus[]> => api<SystemdServiceList>("GET", `${vmPath(id)}/systemd/services`).then((r) => r.services);
export const serviceLogs = (id: string, name: string, lines: number): Promise<SystemdLogs["logs"]> =>
  api<SystemdLogs>("GET", `${vmPath(id)}/systemd/services/${encodeURIComponent(name)}/logs?lines=${lines}`).then((r) => r.logs);
export const controlService = (id: string, name: string, action: "start" | "stop" | "restart"): Promise<SystemdControlResult["results"]> =>
  api<SystemdControlResult>("POST", `${vmPath(id)}/systemd/${action}`, { services: [{ id: name }] }).then((r) => r.results);

export function toBase64(bytes: Uint8Array): string {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

export function fromBase64(b64: string): Uint8Array<ArrayBuffer> {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function age(iso: string, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d`;
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

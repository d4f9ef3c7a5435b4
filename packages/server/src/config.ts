/**
 * Server settings: explicit options first, then environment variables, then an optional JSON
 * config file (`<dataDir>/capsule.json` or `CAPSULE_CONFIG`), then defaults.
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import { DEFAULT_NETWORK, type NetworkStack } from "@capsule/engine";
import { DEFAULT_QUOTAS, defaultAdmission, type AccountQuotas, type AdmissionConfig } from "./quotas.js";
import { isHostname } from "./preview/host.js";
import { REPO_LIMITS } from "./repos/mirrors.js";
import { RepoPolicy } from "./repos/policy.js";
import { DEFAULT_POOL, type PoolConfig } from "./vms/pool.js";

export interface ServerConfig {
  /** TCP port; 0 picks a free one. Env CAPSULE_PORT. Default 8080. */
  port: number;
  /** Listen address. Env CAPSULE_HOST. Default 127.0.0.1 (expose deliberately). */
  host: string;
  /** Engine data dir and the server's database (`<dataDir>/server.db`). Env CAPSULE_DATA_DIR. Default /var/lib/capsule. */
  dataDir: string;
  /** Base images. Env CAPSULE_IMAGES_DIR. Default `<dataDir>/images`. */
  imagesDir: string;
  /** Guest agent bundle. Env CAPSULE_AGENT_BUNDLE. Default `<dataDir>/agent`. */
  agentBundleDir: string;
  /** Idle timeout for VMs created without one; null = never. Env CAPSULE_IDLE_TIMEOUT_SECONDS ("none" for null). Default 300. */
  defaultIdleTimeoutSeconds: number | null;
  /** How often idle VMs are looked for, ms. Default 1000. */
  idleCheckMs: number;
  /** VM egress: "internet" (Freestyle VMs reach the internet; the seed installs over curl) or "none". Env CAPSULE_EGRESS. */
  egress: "none" | "internet";
  /** pino level. Env CAPSULE_LOG_LEVEL. Default info. */
  logLevel: string;
  /** Host TCP ports VMs may reach at `host.capsule.internal` (the engine's allowedHostPorts). Env CAPSULE_ALLOWED_HOST_PORTS (comma-separated). Default none. */
  allowedHostPorts: number[];
  /**
   * Whether VMs may use the host's package caches (apt and npm at `host.capsule.internal`, run by
   * scripts/package-caches.sh) whatever their egress or firewall: the engine's packageCaches.
   * Env CAPSULE_PACKAGE_CACHES (1 or 0). Default true.
   */
  packageCaches: boolean;
  /**
   * Per-account caps (null = none): vms, runningVms, snapshots, snapshotBytes, concurrentExecs,
   * ptys. Each key may be set alone (the rest keep their defaults, `DEFAULT_QUOTAS`). Env
   * CAPSULE_QUOTAS (JSON object).
   */
  quotas: AccountQuotas;
  /**
   * Per-VM maximums (memoryMb, vcpus, diskMb) and host capacity (hostMemoryMb, hostCpus: default
   * os.totalmem() and os.cpus()) with overcommit ratios (memoryOvercommit, cpuOvercommit) over
   * every VM the engine runs. Each key may be set alone. Env CAPSULE_ADMISSION (JSON object).
   */
  admission: AdmissionConfig;
  /**
   * The warm pool (vms/pool.ts): size (default kind; 0 with hotSize 0 turns it off), hotSize,
   * hotKinds, hotTtlSeconds, maxMemoryMb, bootConcurrency, minHostAvailableMb. Each key may be
   * set alone. Env CAPSULE_POOL (JSON object).
   */
  pool: PoolConfig;
  /**
   * Preview URLs are `http://<port>-<vmid>.<previewDomain>[:port]`. Env CAPSULE_PREVIEW_DOMAIN.
   * Default `localhost` (browsers resolve every `*.localhost` to loopback, no DNS needed); for
   * other hosts, a wildcard DNS name pointing at the server (or its TLS terminator).
   */
  previewDomain: string;
  /**
   * Suffixes under which tenants may claim `domains` (each name itself or below it); empty:
   * domains are off. None may overlap an API host name (the server refuses to start). Env
   * CAPSULE_DOMAIN_SUFFIXES (comma-separated). Default none.
   */
  domainSuffixes: string[];
  /**
   * The API's own public host names (besides the listen host and localhost), which no tenant may
   * claim as a domain. Env CAPSULE_API_HOSTNAMES (comma-separated). Default none.
   */
  apiHostnames: string[];
  /**
   * URL prefixes (http or https) of the repositories builds may clone (`git.repos`), matched by
   * whole path segments; empty: `git.repos` is a 501. Env CAPSULE_REPO_PREFIXES (comma-separated).
   * Default none.
   */
  repoPrefixes: string[];
  /** The runsc binary (the engine's runscPath). Env CAPSULE_RUNSC. Default `runsc` on PATH, where scripts/setup.sh installs one. */
  runscPath: string;
  /**
   * The gVisor VMs' network stack (the engine's network): netstack (gVisor's own; VMs can be
   * checkpointed), hostinet (the host kernel's) or auto (netstack if this runsc can start it). With
   * netstack and a runsc that cannot start it, the server does not start. Env CAPSULE_NETWORK.
   */
  network: NetworkStack | "auto";
  /**
   * The repository mirrors' dir, owned by the `capsule-git` user git runs as; outside the data
   * dir, which that user must not read. Env CAPSULE_REPO_MIRRORS_DIR. Default `<dataDir>-repos`.
   */
  repoMirrorsDir: string;
  /** All mirrors together; LRU ones no build uses make room. Env CAPSULE_REPO_MIRRORS_MAX_BYTES. Default 20 GiB. */
  repoMirrorsMaxBytes: number;
  /** A mirror unused for this many days is removed. Env CAPSULE_REPO_MIRROR_UNUSED_DAYS. Default 30. */
  repoMirrorUnusedDays: number;
}

/** Settings as options, env or the file give them: any subset; `quotas` and `admission` key by key. */
export type ConfigOptions = { [K in Exclude<keyof ServerConfig, "quotas" | "admission" | "pool">]?: ServerConfig[K] | undefined } & {
  quotas?: Partial<AccountQuotas> | undefined;
  admission?: Partial<AdmissionConfig> | undefined;
  pool?: Partial<PoolConfig> | undefined;
};
type Partialish = ConfigOptions;

function num(v: string | undefined): number | undefined {
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`expected a number, got ${JSON.stringify(v)}`);
  return n;
}

function ports(v: string | undefined): number[] | undefined {
  if (v === undefined || v.trim() === "") return undefined;
  return v.split(",").map((p) => {
    const n = Number(p.trim());
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`expected a TCP port, got ${JSON.stringify(p)}`);
    return n;
  });
}

function flag(name: string, v: string | undefined): boolean | undefined {
  if (v === undefined || v === "") return undefined;
  if (v === "1" || v === "0") return v === "1";
  throw new Error(`${name} must be 1 or 0, got ${JSON.stringify(v)}`);
}

function jsonObject(name: string, v: string | undefined): Record<string, unknown> | undefined {
  if (v === undefined || v.trim() === "") return undefined;
  const o: unknown = JSON.parse(v);
  if (typeof o !== "object" || o === null || Array.isArray(o)) throw new Error(`${name} must be a JSON object`);
  return o as Record<string, unknown>;
}

/**
 * Defaults, then the file's keys, then env's, then the options' (key by key); every key known and
 * valid: a positive number (an integer with `integer`), or also null (`nullable`: no limit) or 0
 * (`zero`: off).
 */
function section<T extends object>(name: string, dflt: T, allow: { nullable?: boolean; zero?: boolean; integer?: boolean }, ...layers: Array<Record<string, unknown> | undefined>): T {
  const nullable = allow.nullable === true;
  const out: Record<string, unknown> = { ...(dflt as Record<string, unknown>) };
  for (const layer of layers) {
    for (const [k, v] of Object.entries(layer ?? {})) {
      if (!(k in dflt)) throw new Error(`${name}.${k} is not a setting; known: ${Object.keys(dflt).join(", ")}`);
      if (v === undefined) continue;
      if (v === null && nullable) out[k] = null;
      else if (typeof v === "number" && Number.isFinite(v) && (v > 0 || (v === 0 && allow.zero === true)) && (allow.integer !== true || Number.isInteger(v))) out[k] = v;
      else throw new Error(`${name}.${k} must be a positive ${allow.integer ? "integer" : "number"}${nullable ? " or null (no limit)" : ""}${allow.zero ? " or 0" : ""}, got ${JSON.stringify(v)}`);
    }
  }
  return out as T;
}

/** A DNS name as the server compares them: lower case, no trailing dot. */
function previewDomain(v: string): string {
  const name = v.trim().toLowerCase().replace(/\.$/, "");
  if (!isHostname(name)) throw new Error(`expected a DNS name, got ${JSON.stringify(v)}`);
  return name;
}

function names(v: string | undefined): string[] | undefined {
  if (v === undefined || v.trim() === "") return undefined;
  return v.split(",").map((s) => s.trim());
}

function positive(name: string, v: number): number {
  if (!(v > 0)) throw new Error(`${name} must be a positive number, got ${JSON.stringify(v)}`);
  return v;
}

function idle(v: string | undefined): number | null | undefined {
  if (v === "none" || v === "null") return null;
  return num(v);
}

export function resolveConfig(opts: Partialish = {}, env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const dataDir = path.resolve(opts.dataDir ?? env.CAPSULE_DATA_DIR ?? "/var/lib/capsule");
  const file = env.CAPSULE_CONFIG ?? path.join(dataDir, "capsule.json");
  const fromFile: Partialish = fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, "utf8")) as Partialish) : {};
  const pick = <K extends keyof ServerConfig>(k: K, fromEnv: ServerConfig[K] | undefined, dflt: ServerConfig[K]): ServerConfig[K] =>
    opts[k] !== undefined ? (opts[k] as ServerConfig[K]) : fromEnv !== undefined ? fromEnv : fromFile[k] !== undefined ? (fromFile[k] as ServerConfig[K]) : dflt;
  const egress = pick("egress", env.CAPSULE_EGRESS as ServerConfig["egress"] | undefined, "internet");
  if (egress !== "none" && egress !== "internet") throw new Error(`egress must be none or internet, got ${String(egress)}`);
  const network = pick("network", env.CAPSULE_NETWORK as ServerConfig["network"] | undefined, DEFAULT_NETWORK);
  if (network !== "netstack" && network !== "hostinet" && network !== "auto") throw new Error(`network must be netstack, hostinet or auto, got ${String(network)}`);
  return {
    port: pick("port", num(env.CAPSULE_PORT), 8080),
    host: pick("host", env.CAPSULE_HOST, "127.0.0.1"),
    dataDir,
    imagesDir: path.resolve(pick("imagesDir", env.CAPSULE_IMAGES_DIR, path.join(dataDir, "images"))),
    agentBundleDir: path.resolve(pick("agentBundleDir", env.CAPSULE_AGENT_BUNDLE, path.join(dataDir, "agent"))),
    defaultIdleTimeoutSeconds: pick("defaultIdleTimeoutSeconds", idle(env.CAPSULE_IDLE_TIMEOUT_SECONDS), 300),
    idleCheckMs: pick("idleCheckMs", num(env.CAPSULE_IDLE_CHECK_MS), 1000),
    egress,
    logLevel: pick("logLevel", env.CAPSULE_LOG_LEVEL, "info"),
    allowedHostPorts: pick("allowedHostPorts", ports(env.CAPSULE_ALLOWED_HOST_PORTS), []),
    packageCaches: pick("packageCaches", flag("CAPSULE_PACKAGE_CACHES", env.CAPSULE_PACKAGE_CACHES), true),
    quotas: section<AccountQuotas>("quotas", DEFAULT_QUOTAS, { nullable: true }, fromFile.quotas as Record<string, unknown> | undefined, jsonObject("CAPSULE_QUOTAS", env.CAPSULE_QUOTAS), opts.quotas as Record<string, unknown> | undefined),
    admission: section<AdmissionConfig>("admission", defaultAdmission(), {}, fromFile.admission as Record<string, unknown> | undefined, jsonObject("CAPSULE_ADMISSION", env.CAPSULE_ADMISSION), opts.admission as Record<string, unknown> | undefined),
    previewDomain: previewDomain(pick("previewDomain", env.CAPSULE_PREVIEW_DOMAIN, "localhost")),
    domainSuffixes: pick("domainSuffixes", names(env.CAPSULE_DOMAIN_SUFFIXES), []).map(previewDomain),
    apiHostnames: pick("apiHostnames", names(env.CAPSULE_API_HOSTNAMES), []).map(previewDomain),
    // Normalized by the policy itself (one check of a prefix), so a bad one stops the server before anything opens.
    repoPrefixes: [...new RepoPolicy(pick("repoPrefixes", names(env.CAPSULE_REPO_PREFIXES), [])).prefixes],
    runscPath: pick("runscPath", env.CAPSULE_RUNSC, "runsc"),
    network,
    repoMirrorsDir: path.resolve(pick("repoMirrorsDir", env.CAPSULE_REPO_MIRRORS_DIR, `${dataDir}-repos`)),
    repoMirrorsMaxBytes: positive("repoMirrorsMaxBytes", pick("repoMirrorsMaxBytes", num(env.CAPSULE_REPO_MIRRORS_MAX_BYTES), REPO_LIMITS.totalBytes)),
    repoMirrorUnusedDays: positive("repoMirrorUnusedDays", pick("repoMirrorUnusedDays", num(env.CAPSULE_REPO_MIRROR_UNUSED_DAYS), REPO_LIMITS.unusedMs / 86_400_000)),
    pool: section<PoolConfig>("pool", DEFAULT_POOL, { zero: true, integer: true }, fromFile.pool as Record<string, unknown> | undefined, jsonObject("CAPSULE_POOL", env.CAPSULE_POOL), opts.pool as Record<string, unknown> | undefined),
  };
}

export function dbPath(dataDir: string): string {
  return path.join(dataDir, "server.db");
}

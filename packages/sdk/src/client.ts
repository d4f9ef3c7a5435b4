/**
 * The client: `new Capsule({ apiUrl, apiKey })`, or the lazily configured default instance
 * (`capsule`, also exported as `freestyle`) that reads CAPSULE_API_URL / CAPSULE_API_KEY,
 * falling back to FREESTYLE_API_URL / FREESTYLE_API_KEY, on first use.
 * @module
 */
import { Build, Builds } from "./builds.js";
import { makeError } from "./errors.js";
import type { VmSpec } from "./spec.js";
import { DEFAULT_IDLE_TIMEOUT_MS, globalFetch, seg, Transport, type FetchLike } from "./transport.js";
import type { CreateVmOptions, EnsureSnapshotResponse, SnapshotInfo, SnapshotList, VmList, VmInfo } from "./types.js";
import { Vm } from "./vm.js";

/** Options of `new Capsule()`. */
export interface CapsuleOptions {
  /** Server URL, e.g. `http://127.0.0.1:8080`. Default: env CAPSULE_API_URL, then FREESTYLE_API_URL. */
  apiUrl?: string;
  /** Alias of `apiUrl`, the freestyle client's name for it. */
  baseUrl?: string;
  /** API key (`capsule keys create`). Default: env CAPSULE_API_KEY, then FREESTYLE_API_KEY. */
  apiKey?: string;
  /** The fetch to use. Default: the global `fetch`. */
  fetch?: FetchLike;
  /**
   * A JSON call whose connection carries nothing for this long fails with NETWORK_ERROR, ms.
   * Default {@link DEFAULT_IDLE_TIMEOUT_MS} (a long exec-await is not idle: the server sends a
   * keep-alive byte every 30 s).
   */
  idleTimeoutMs?: number;
}

/** `vms.create()`'s result: the server's answer plus a handle. */
export interface CreateVmResult {
  id: string;
  vmId: string;
  vm: Vm;
  domains: string[];
  snapshotId: string | null;
}

function fromEnv(names: string[]): string | undefined {
  for (const n of names) {
    const v = process.env[n];
    if (v) return v;
  }
  return undefined;
}

/**
 * How long an ensure (or a create with a spec) may go without a byte: the server answers only
 * when the build has ended, and a build waits up to 15 min for its oneshots after apt.
 */
export const BUILD_IDLE_TIMEOUT_MS = 30 * 60_000;

/** `snapshots.ensure()`'s options: a spec (layers) and the snapshot's name. */
export interface EnsureSnapshotOptions {
  spec: VmSpec;
  name?: string;
}

/** `snapshots.ensure()`'s result: the server's answer and a handle on the build that made the snapshot. */
export type EnsureSnapshotResult = EnsureSnapshotResponse & { build: Build };

/** Snapshots of the account. */
export class Snapshots {
  /** @internal */
  constructor(private readonly t: Transport) {}

  /**
   * The snapshot of a spec: built in a builder VM (each layer once, innermost first), or the
   * cached one when the same spec was built before (`cached: true`, no build ran). A failed build
   * throws VM_SETUP_FAILED, whose `body` has `buildId`, the failed phase and its services' logs.
   * The call answers when the build has ended.
   */
  async ensure({ spec, name }: EnsureSnapshotOptions): Promise<EnsureSnapshotResult> {
    const r = await this.t.json<EnsureSnapshotResponse>("POST", "/v1/vms/snapshots", {
      json: { spec: spec.toJSON(), ...(name !== undefined ? { name } : {}) },
      idleTimeoutMs: BUILD_IDLE_TIMEOUT_MS,
    });
    return { ...r, build: new Build(this.t, r.buildId) };
  }

  /** Same as `ensure` (the official client's alias). */
  async create(opts: EnsureSnapshotOptions): Promise<EnsureSnapshotResult> {
    return this.ensure(opts);
  }

  /** Every snapshot of the account. */
  async list(): Promise<SnapshotList> {
    return this.t.json("GET", "/v1/vms/snapshots");
  }

  /** One snapshot. */
  async get({ snapshotId }: { snapshotId: string }): Promise<SnapshotInfo> {
    return this.t.json("GET", `/v1/vms/snapshots/${seg(snapshotId)}`);
  }

  /** Deletes a snapshot; VMs booted from it keep working. */
  async delete({ snapshotId }: { snapshotId: string }): Promise<Record<string, unknown>> {
    return this.t.json("DELETE", `/v1/vms/snapshots/${seg(snapshotId)}`);
  }
}

/** VMs of the account. */
export class Vms {
  /** Snapshots (same as `capsule.snapshots`). */
  readonly snapshots: Snapshots;

  /** @internal */
  constructor(private readonly t: Transport) {
    this.snapshots = new Snapshots(t);
  }

  /** Creates a VM and returns once it is ready for `exec`. */
  async create(opts: CreateVmOptions = {}): Promise<CreateVmResult> {
    const { spec, ...fields } = opts;
    const body = spec ? { ...fields, spec: spec.toJSON() } : fields;
    const r = await this.t.json<{ id: string; domains?: string[]; snapshotId?: string | null } & Record<string, unknown>>("POST", "/v1/vms", { json: body, ...(spec ? { idleTimeoutMs: BUILD_IDLE_TIMEOUT_MS } : {}) });
    const { consoleUrl: _c, ...rest } = r;
    return { ...rest, id: r.id, vmId: r.id, vm: this.ref({ vmId: r.id }), domains: r.domains ?? [], snapshotId: r.snapshotId ?? null };
  }

  /** Lists the account's VMs with their states. */
  async list(): Promise<VmList> {
    return this.t.json("GET", "/v1/vms");
  }

  /** Fetches a VM's info (VM_NOT_FOUND if it does not exist) and returns a handle with it. */
  async get({ vmId }: { vmId: string }): Promise<{ vm: Vm; info: VmInfo }> {
    const info = await this.t.json<VmInfo>("GET", `/v1/vms/${seg(vmId)}`);
    return { vm: this.ref({ vmId }), info };
  }

  /** A handle for a VM id, without a request. */
  ref({ vmId }: { vmId: string }): Vm {
    return new Vm(this.t, vmId, undefined, (id) => this.ref({ vmId: id }));
  }

  /** Deletes a VM. */
  async delete({ vmId }: { vmId: string }): Promise<{ id: string }> {
    return this.t.json("DELETE", `/v1/vms/${seg(vmId)}`);
  }
}

/** A Capsule API client. */
export class Capsule {
  /** VMs: create, list, get, ref, delete (and `vms.snapshots`). */
  readonly vms: Vms;
  /** Snapshots: ensure (from a spec), list, get, delete. */
  readonly snapshots: Snapshots;
  /** Builds of declarative snapshots: ref, get, list. */
  readonly builds: Builds;
  /** The normalised server URL. */
  readonly apiUrl: string;

  constructor(opts: CapsuleOptions = {}) {
    const url = opts.apiUrl || opts.baseUrl || fromEnv(["CAPSULE_API_URL", "FREESTYLE_API_URL"]);
    if (!url) throw makeError("CONFIG_MISSING", "no API URL: set CAPSULE_API_URL (e.g. http://127.0.0.1:8080) or pass new Capsule({ apiUrl })");
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw makeError("CONFIG_MISSING", `the API URL ${JSON.stringify(url)} is not a URL; set CAPSULE_API_URL like http://127.0.0.1:8080`);
    }
    const apiKey = opts.apiKey || fromEnv(["CAPSULE_API_KEY", "FREESTYLE_API_KEY"]);
    if (!apiKey) throw makeError("CONFIG_MISSING", "no API key: set CAPSULE_API_KEY (create one with `capsule keys create`) or pass new Capsule({ apiKey })");
    this.apiUrl = parsed.toString().replace(/\/+$/, "");
    const t = new Transport(this.apiUrl, apiKey, opts.fetch ?? globalFetch, opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS);
    this.vms = new Vms(t);
    this.snapshots = this.vms.snapshots;
    this.builds = new Builds(t);
  }
}

let defaultInstance: Capsule | undefined;

/**
 * The default client, configured from the environment on first use (nothing is read or sent
 * at import time).
 */
export const capsule: Capsule = new Proxy({} as Capsule, {
  get(_target, prop) {
    defaultInstance ??= new Capsule();
    const value: unknown = Reflect.get(defaultInstance, prop, defaultInstance);
    return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(defaultInstance) : value;
  },
});

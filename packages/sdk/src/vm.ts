/** A VM handle: exec, spawn, files, terminals, services, snapshots and lifecycle. @module */
import { VmFs } from "./fs.js";
import { VmPty } from "./pty.js";
import { makeError } from "./errors.js";
import { spawnProcess, type SpawnedProcess, type SpawnOptions } from "./spawn.js";
import { VmSystemd } from "./systemd.js";
import { seg, type Transport } from "./transport.js";
import type { LiveShare, PortAccess, PortList, PortSummary, Share, ShareList } from "@capsule/contract/schemas";
import type { ExecOptions, ExecResult, SnapshotResult, VmInfo } from "./types.js";

/** Options of `vm.start()`. */
export interface StartVmOptions {
  /** New idle timeout, in seconds; `null` disables it. Default: unchanged. */
  idleTimeoutSeconds?: number | null;
}

/** Options of `vm.snapshot()`. */
export interface SnapshotOptions {
  /** A label for the snapshot. Default: none. */
  name?: string | null;
  /**
   * Also capture the VM's memory, at the same instant as its disk: a VM created from the
   * snapshot resumes the running processes. A VM that cannot be checkpointed (runc, a server on
   * host networking) fails with BAD_REQUEST, `reason` MEMORY_UNSUPPORTED. Default false: the disk only.
   */
  memory?: boolean;
}

/** Options of `vm.fork()`. */
export interface ForkOptions {
  /** How many copies. Default 1. */
  count?: number;
  /**
   * true: each copy resumes this VM's running processes (or the fork fails with BAD_REQUEST,
   * `reason` MEMORY_UNSUPPORTED); false: each boots its current disk afresh. Default: memory
   * where this VM can be checkpointed, else the disk.
   */
  memory?: boolean;
}

/**
 * One VM. Handles are cheap and make no request until used; `vm.user({ username })` returns a
 * handle whose exec, spawn, fs, pty and systemd calls run as that Linux user.
 */
export class Vm {
  /** The VM's id. */
  readonly vmId: string;
  /** Files in the VM (as this handle's user). */
  readonly fs: VmFs;
  /** Terminal sessions in the VM (as this handle's user). */
  readonly pty: VmPty;
  /** Services in the VM (run as this handle's user unless a spec names one). */
  readonly systemd: VmSystemd;
  readonly #t: Transport;
  readonly #user: string | undefined;
  readonly #ref: (vmId: string) => Vm;

  /** @internal use `capsule.vms.create()` / `ref()`. */
  constructor(t: Transport, vmId: string, user: string | undefined, ref: (vmId: string) => Vm) {
    this.#t = t;
    this.vmId = vmId;
    this.#user = user;
    this.#ref = ref;
    this.fs = new VmFs(t, vmId, user, (command) => this.exec(command));
    this.pty = new VmPty(t, vmId, user);
    this.systemd = new VmSystemd(t, vmId, user);
  }

  /** The VM's id (same as `vmId`). */
  get id(): string {
    return this.vmId;
  }

  /** The Linux user this handle acts as; undefined means root. */
  get username(): string | undefined {
    return this.#user;
  }

  #path(suffix = ""): string {
    return `/v1/vms/${seg(this.vmId)}${suffix}`;
  }

  /** A handle for the same VM whose exec, spawn, fs and pty calls run as `username`. No request. */
  user({ username }: { username: string }): Vm {
    return new Vm(this.#t, this.vmId, username, this.#ref);
  }

  /**
   * Runs a command through `/bin/sh -c` and waits for it; a non-zero exit is a result, not an
   * error. `env` adds variables to its environment; `stdin` is its input (text or bytes).
   */
  async exec(command: string | ExecOptions): Promise<ExecResult> {
    const o: ExecOptions = typeof command === "string" ? { command } : command;
    const json = {
      command: o.command,
      terminal: o.terminal ?? null,
      timeoutMs: o.timeoutMs ?? null,
      // Sent only when given: the request stays the freestyle client's without them.
      ...(o.env !== undefined ? { env: o.env } : {}),
      ...(o.stdin !== undefined ? { stdin: Buffer.from(o.stdin).toString("base64") } : {}),
    };
    const r = await this.#t.json<ExecResult & { code?: string; message?: string }>("POST", this.#path("/exec-await"), { json, user: this.#user });
    // A long exec gets early 200 headers; its timeout then arrives in the body.
    if (typeof r.code === "string" && r.statusCode === null) throw makeError(r.code, r.message ?? "exec failed", { status: 200, body: { ...r } });
    return { stdout: r.stdout ?? null, stderr: r.stderr ?? null, statusCode: r.statusCode ?? null };
  }

  /**
   * Starts a process with live stdin/stdout/stderr streams (Capsule extension). Read its stdout
   * and stderr (or `resume()` them): like a pipe, unread output eventually stalls the process.
   */
  spawn(command: string, opts: SpawnOptions = {}): SpawnedProcess {
    return spawnProcess(this.#t, this.vmId, command, opts, this.#user);
  }

  /** State and sizing of the VM. */
  async getInfo(): Promise<VmInfo> {
    return this.#t.json("GET", this.#path());
  }

  /** Starts a stopped or suspended VM. */
  async start(opts: StartVmOptions = {}): Promise<Record<string, unknown>> {
    return this.#t.json("POST", this.#path("/start"), { json: opts });
  }

  /** Stops the VM (its disk is kept; `start()` boots it again). */
  async stop(): Promise<Record<string, unknown>> {
    return this.#t.json("POST", this.#path("/stop"));
  }

  /** Suspends the VM; any call that needs it running wakes it. */
  async suspend(): Promise<Record<string, unknown>> {
    return this.#t.json("POST", this.#path("/suspend"));
  }

  /** Stops the VM at once. */
  async kill(): Promise<Record<string, unknown>> {
    return this.#t.json("POST", this.#path("/kill"));
  }

  /**
   * Snapshots the VM's disk (with `memory: true`, its memory too); the VM keeps running. Boot
   * copies with `vms.create({ snapshotId })`.
   */
  async snapshot(opts: SnapshotOptions = {}): Promise<SnapshotResult> {
    return this.#t.json("POST", this.#path("/snapshot"), { json: opts });
  }

  /** New VMs from this VM as it is now (its processes too, where it can be checkpointed); this VM keeps running. */
  async fork(opts: ForkOptions = {}): Promise<{ forks: Array<{ vmId: string; vm: Vm }> }> {
    const r = await this.#t.json<{ forks: Array<{ id: string }> }>("POST", this.#path("/fork"), { json: opts });
    return { forks: r.forks.map((f) => ({ vmId: f.id, vm: this.#ref(f.id) })) };
  }

  /**
   * The preview URL of a port of this VM (`http://<port>-<vmId>.<previewDomain>:<serverPort>/`,
   * Capsule extension). Private unless made public: open it with the API key
   * (`Authorization: Bearer`), or in a browser through {@link share}'s link.
   */
  async previewUrl(port: number): Promise<string> {
    return (await this.#t.json<PortAccess>("GET", this.#path(`/ports/${port}`))).url;
  }

  /** A link to the port's preview that anyone holding it may open for `ttl` seconds, or until {@link revokeShare}. */
  async share(port: number, opts: { ttl: number }): Promise<Share> {
    return this.#t.json("POST", this.#path(`/ports/${port}/shares`), { json: { ttlSeconds: opts.ttl } });
  }

  /** The port's live share links (ids and expiries: the tokens are not kept), to revoke without remembering ids. */
  async shares(port: number): Promise<LiveShare[]> {
    return (await this.#t.json<ShareList>("GET", this.#path(`/ports/${port}/shares`))).shares;
  }

  /** The VM's ports that are public or have live share links, with their preview URLs and shares. */
  async ports(): Promise<PortSummary[]> {
    return (await this.#t.json<PortList>("GET", this.#path("/ports"))).ports;
  }

  /** Ends a share link (and the browser sessions and connections opened with it) at once. */
  async revokeShare(port: number, shareId: string): Promise<void> {
    await this.#t.json("DELETE", this.#path(`/ports/${port}/shares/${seg(shareId)}`));
  }

  /** Makes the port's preview open to anyone (`true`) or private again. */
  async setPortPublic(port: number, isPublic: boolean): Promise<PortAccess> {
    return this.#t.json("PUT", this.#path(`/ports/${port}/public`), { json: { public: isPublic } });
  }

  /** Deletes the VM and its disk (snapshots taken from it stay). */
  async delete(): Promise<{ id: string }> {
    return this.#t.json("DELETE", this.#path());
  }
}

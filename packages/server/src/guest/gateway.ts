/**
 * The guest gateway: the one way routes and WebSocket handlers reach a VM. One call
 *
 * 1. checks ownership (another account's id is VM_NOT_FOUND, and nothing else happens: no
 *    activity, no wake, no engine call);
 * 2. takes the activity hold, so the idle monitor leaves the VM alone from here on;
 * 3. makes sure the VM runs: a row that says `running` is trusted (the engine checks the state
 *    again when the operation reaches the agent), a suspended VM is woken — once, however many
 *    callers wait for it —, a stopped one answers VM_NOT_RUNNING;
 * 4. runs the caller's function with the row it read and guest operations bound to that VM;
 * 5. maps every error through `toApiError`, with the route's own code for invalid input.
 *
 * `withVm` releases the hold when the function settles; `open` hands it to the caller for
 * long-lived streams (PTY, exec stream, file downloads), which must `release()` on every path
 * (it is idempotent). A failure before the handle is returned releases it itself.
 *
 * Steps 1 and 2 run in the same tick with no await between them and the idle monitor's own
 * check-and-suspend (also synchronous), so a request either sees the row the monitor already
 * marked `suspended` (and wakes the VM) or makes the monitor skip the VM.
 * @module
 */
import type { Engine, GuestOps } from "@capsule/engine";
import type { ActivityTracker } from "../activity.js";
import { ApiError, toApiError } from "../errors.js";
import type { Account } from "../keys.js";
import type { Power } from "../vms/power.js";
import type { Rows, VmRow } from "../vms/rows.js";

/** The route's own code for invalid input (FILES_BAD_REQUEST on the files routes, ...). */
export type BadRequestCode = NonNullable<Parameters<typeof toApiError>[1]>;

export interface GuestCallOptions {
  /** Wake a suspended VM first (default). false: nothing is woken; `vm.running` says whether it runs. */
  wake?: boolean;
  /** Hold the VM busy for the idle monitor while the call (or the handle) lives (default). */
  hold?: boolean;
  /** Code for invalid input in the error mapping; default BAD_REQUEST. */
  badRequest?: BadRequestCode;
}

/** The VM as the gateway found it: the API's row, read once. */
export interface GuestVm {
  readonly id: string;
  readonly row: VmRow;
  /** Whether the VM runs now (always true with `wake`). */
  readonly running: boolean;
}

/** A long-lived use of a VM: its hold lasts until `release()`, which is idempotent. */
export interface GuestHandle<T> {
  readonly vm: GuestVm;
  readonly value: T;
  release(): void;
}

const NO_HOLD = (): void => undefined;

export class GuestGateway {
  constructor(
    private readonly engine: Engine,
    private readonly rows: Rows,
    private readonly power: Power,
    private readonly activity: ActivityTracker,
  ) {}

  /** Runs `fn` on the account's VM (see the module comment); the hold ends when `fn` settles. */
  async withVm<T>(account: Account, vmId: string, opts: GuestCallOptions, fn: (vm: GuestVm, guest: VmGuest) => Promise<T>): Promise<T> {
    const handle = await this.open(account, vmId, opts, fn);
    handle.release();
    return handle.value;
  }

  /** Like `withVm`, but the hold lasts until the returned handle is released. */
  open<T>(account: Account, vmId: string, opts: GuestCallOptions, fn: (vm: GuestVm, guest: VmGuest) => Promise<T>): Promise<GuestHandle<T>> {
    // Not async: the ownership check and the hold happen now, in the caller's tick.
    let row: VmRow;
    try {
      row = this.rows.ownedVm(account, vmId);
    } catch (err) {
      return Promise.reject(toApiError(err));
    }
    const release = opts.hold === false ? NO_HOLD : this.activity.hold(row.id);
    return this.#run(row, opts, fn).then(
      ({ vm, value }) => ({ vm, value, release }),
      (err: unknown) => {
        release();
        throw toApiError(err, opts.badRequest);
      },
    );
  }

  async #run<T>(row: VmRow, opts: GuestCallOptions, fn: (vm: GuestVm, guest: VmGuest) => Promise<T>): Promise<{ vm: GuestVm; value: T }> {
    const vm: GuestVm = { id: row.id, row, running: await this.#ready(row, opts.wake !== false) };
    return { vm, value: await fn(vm, new VmGuest(this.engine.guest, row.id)) };
  }

  /** Whether the VM runs, waking it when asked. A stopped VM stays stopped until POST start. */
  async #ready(row: VmRow, wake: boolean): Promise<boolean> {
    if (row.desired === "running" && !this.power.isWaking(row.id)) return true;
    if (row.desired !== "stopped" && wake) {
      await this.power.wake(row);
      return true;
    }
    const running = await this.power.isRunning(row.id);
    if (running === undefined) throw new ApiError("VM_NOT_FOUND", `VM not found: ${row.id}`);
    if (running || !wake) return running;
    throw new ApiError("VM_NOT_RUNNING", `VM ${row.id} is stopped; start it with POST /v1/vms/${row.id}/start`);
  }
}

/** A tuple without its first element: a guest op's arguments after the VM id. */
type Tail<T extends unknown[]> = T extends [unknown, ...infer R] ? R : never;

/** Guest operations bound to one VM; the engine checks the VM runs before each reaches the agent. */
export class VmGuest {
  constructor(
    private readonly ops: GuestOps,
    readonly vmId: string,
  ) {}

  exec(opts: Parameters<GuestOps["exec"]>[1]): ReturnType<GuestOps["exec"]> {
    return this.ops.exec(this.vmId, opts);
  }
  spawn(opts: Parameters<GuestOps["spawn"]>[1]): ReturnType<GuestOps["spawn"]> {
    return this.ops.spawn(this.vmId, opts);
  }
  ptyOpen(opts: Parameters<GuestOps["ptyOpen"]>[1]): ReturnType<GuestOps["ptyOpen"]> {
    return this.ops.ptyOpen(this.vmId, opts);
  }
  ptyAttach(sessionId: string, opts: Parameters<GuestOps["ptyAttach"]>[2]): ReturnType<GuestOps["ptyAttach"]> {
    return this.ops.ptyAttach(this.vmId, sessionId, opts);
  }
  ptyList(): ReturnType<GuestOps["ptyList"]> {
    return this.ops.ptyList(this.vmId);
  }
  ptyClose(sessionId: string): ReturnType<GuestOps["ptyClose"]> {
    return this.ops.ptyClose(this.vmId, sessionId);
  }
  serviceDefine(...args: Tail<Parameters<GuestOps["serviceDefine"]>>): ReturnType<GuestOps["serviceDefine"]> {
    return this.ops.serviceDefine(this.vmId, ...args);
  }
  serviceSpec(name: string): ReturnType<GuestOps["serviceSpec"]> {
    return this.ops.serviceSpec(this.vmId, name);
  }
  serviceList(): ReturnType<GuestOps["serviceList"]> {
    return this.ops.serviceList(this.vmId);
  }
  serviceStatus(name: string): ReturnType<GuestOps["serviceStatus"]> {
    return this.ops.serviceStatus(this.vmId, name);
  }
  serviceControl(...args: Tail<Parameters<GuestOps["serviceControl"]>>): ReturnType<GuestOps["serviceControl"]> {
    return this.ops.serviceControl(this.vmId, ...args);
  }
  serviceDelete(name: string): ReturnType<GuestOps["serviceDelete"]> {
    return this.ops.serviceDelete(this.vmId, name);
  }
  serviceLogs(...args: Tail<Parameters<GuestOps["serviceLogs"]>>): ReturnType<GuestOps["serviceLogs"]> {
    return this.ops.serviceLogs(this.vmId, ...args);
  }
  stat(path: string, opts: Parameters<GuestOps["stat"]>[2]): ReturnType<GuestOps["stat"]> {
    return this.ops.stat(this.vmId, path, opts);
  }
  list(path: string, opts: Parameters<GuestOps["list"]>[2]): ReturnType<GuestOps["list"]> {
    return this.ops.list(this.vmId, path, opts);
  }
  exists(path: string, opts: Parameters<GuestOps["exists"]>[2]): ReturnType<GuestOps["exists"]> {
    return this.ops.exists(this.vmId, path, opts);
  }
  mkdir(path: string, opts: Parameters<GuestOps["mkdir"]>[2]): ReturnType<GuestOps["mkdir"]> {
    return this.ops.mkdir(this.vmId, path, opts);
  }
  remove(path: string, opts: Parameters<GuestOps["remove"]>[2]): ReturnType<GuestOps["remove"]> {
    return this.ops.remove(this.vmId, path, opts);
  }
  readFile(path: string, opts: Parameters<GuestOps["readFile"]>[2]): ReturnType<GuestOps["readFile"]> {
    return this.ops.readFile(this.vmId, path, opts);
  }
  readFileStream(path: string, opts: Parameters<GuestOps["readFileStream"]>[2]): ReturnType<GuestOps["readFileStream"]> {
    return this.ops.readFileStream(this.vmId, path, opts);
  }
  writeFile(path: string, data: Parameters<GuestOps["writeFile"]>[2], opts: Parameters<GuestOps["writeFile"]>[3]): ReturnType<GuestOps["writeFile"]> {
    return this.ops.writeFile(this.vmId, path, data, opts);
  }
  connectTcp(port: number): ReturnType<GuestOps["connectTcp"]> {
    return this.ops.connectTcp(this.vmId, port);
  }
}

/**
 * The guest gateway's rules, on the real database, rows, power service and activity tracker,
 * with an engine stand-in that records every call (no sandbox needed): ownership first with no
 * side effect, one wake for concurrent callers, holds that end on every path, one error mapping.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { EngineError, ErrorCode, type Engine, type VmState } from "@capsule/engine";
import pino from "pino";
import { ActivityTracker } from "../src/activity.js";
import { openDb, type Db } from "../src/db.js";
import { ApiError } from "../src/errors.js";
import { GuestGateway } from "../src/guest/gateway.js";
import { KeyStore, type Account } from "../src/keys.js";
import { Power } from "../src/vms/power.js";
import { Rows, type Desired } from "../src/vms/rows.js";
import { scratchDir } from "../test-support/harness.js";

/** Just what the gateway and the power service call, each call recorded. */
class EngineStandIn {
  readonly calls: string[] = [];
  readonly state = new Map<string, VmState>();
  failStart = false;

  async getVm(id: string) {
    this.calls.push(`getVm ${id}`);
    return { id, state: this.#state(id) };
  }
  async startVm(id: string) {
    this.calls.push(`startVm ${id}`);
    await new Promise((r) => setTimeout(r, 30));
    if (this.failStart) throw new EngineError(ErrorCode.Internal, "boot failed");
    this.state.set(id, "running");
    return { id, state: "running" };
  }
  async stopVm(id: string) {
    this.calls.push(`stopVm ${id}`);
    this.state.set(id, "stopped");
    return { id, state: "stopped" };
  }
  async netStats(id: string) {
    this.calls.push(`netStats ${id}`);
    return { rxBytes: 0, txBytes: 0 };
  }
  readonly guest = {
    exec: async (id: string, opts: { command: string }) => {
      this.calls.push(`exec ${id} ${opts.command}`);
      if (this.#state(id) !== "running") throw new EngineError(ErrorCode.InvalidState, `VM ${id} is ${this.#state(id)}`);
      if (opts.command === "agent says no") throw new EngineError(ErrorCode.AgentError, "PERMISSION_DENIED", { agentCode: "PERMISSION_DENIED" });
      return { stdout: "ok", stderr: "", exitCode: 0, signal: null, timedOut: false, truncated: false };
    },
  };

  #state(id: string): VmState {
    const s = this.state.get(id);
    if (!s) throw new EngineError(ErrorCode.VmNotFound, `VM ${id} not found`);
    return s;
  }
}

describe("guest gateway", () => {
  let dir: string;
  let db: Db;
  let alice: Account;
  let bob: Account;
  let engine: EngineStandIn;
  let rows: Rows;
  let activity: ActivityTracker;
  let gateway: GuestGateway;
  let n = 0;

  before(async () => {
    dir = await scratchDir();
    db = openDb(path.join(dir, "server.db"));
    const keys = new KeyStore(db);
    alice = keys.ensureAccount("alice");
    bob = keys.ensureAccount("bob");
  });
  after(async () => {
    db.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  /** A fresh gateway over the same database, and one VM of alice's in the given states. */
  function setup(desired: Desired, state: VmState): string {
    engine = new EngineStandIn();
    rows = new Rows(db);
    activity = new ActivityTracker();
    const e = engine as unknown as Engine;
    const power = new Power(e, rows, activity, pino({ level: "silent" }));
    gateway = new GuestGateway(e, rows, power, activity);
    const id = `vm${++n}`;
    rows.insertVm({ id, account_id: alice.id, name: null, idle_timeout_seconds: 60, activity_threshold_bytes: 0, created_at: new Date().toISOString() });
    if (desired !== "running") rows.setDesired(id, desired);
    engine.state.set(id, state);
    return id;
  }

  const echo = (vm: string) => gateway.withVm(alice, vm, {}, (_vm, guest) => guest.exec({ command: "echo" }));
  const desiredOf = (id: string) => rows.ownedVm(alice, id).desired;

  it("another account's VM id: VM_NOT_FOUND, and nothing touched — no engine call, no activity", async () => {
    const vm = setup("suspended", "stopped");
    const since = Date.now() - 60_000;
    for (const opts of [{}, { wake: false }, { hold: false }]) {
      await assert.rejects(
        gateway.withVm(bob, vm, opts, () => Promise.reject(new Error("must not run"))),
        (err: unknown) => err instanceof ApiError && err.code === "VM_NOT_FOUND" && err.status === 404,
      );
      await assert.rejects(gateway.open(bob, vm, opts, () => Promise.reject(new Error("must not run"))), { code: "VM_NOT_FOUND" });
    }
    assert.deepEqual(engine.calls, []);
    assert.equal(activity.isBusy(vm), false);
    assert.ok(activity.idleMs(vm, since) >= 60_000, "the idle clock was not reset");
    assert.equal(desiredOf(vm), "suspended", "not woken");
  });

  it("a running VM: the row is read once and the engine only sees the operation", async () => {
    const vm = setup("running", "running");
    assert.equal((await echo(vm)).stdout, "ok");
    assert.deepEqual(engine.calls, [`exec ${vm} echo`]);
    assert.equal(activity.isBusy(vm), false, "the hold ended with the call");
  });

  it("a suspended VM is woken once for any number of concurrent callers", async () => {
    const vm = setup("suspended", "stopped");
    const results = await Promise.all(Array.from({ length: 8 }, () => echo(vm)));
    assert.ok(results.every((r) => r.stdout === "ok"));
    assert.equal(engine.calls.filter((c) => c.startsWith("startVm")).length, 1, engine.calls.join(", "));
    assert.equal(engine.calls.filter((c) => c.startsWith("exec")).length, 8);
    assert.equal(desiredOf(vm), "running");
    assert.equal(activity.isBusy(vm), false);
  });

  it("a failed wake keeps the VM suspended, answers the mapped error and releases the hold", async () => {
    const vm = setup("suspended", "stopped");
    engine.failStart = true;
    await assert.rejects(echo(vm), (err: unknown) => err instanceof ApiError && err.code === "INTERNAL_ERROR");
    assert.equal(desiredOf(vm), "suspended");
    assert.equal(activity.isBusy(vm), false);
    engine.failStart = false;
    assert.equal((await echo(vm)).stdout, "ok", "the next call wakes it");
  });

  it("a VM its owner stopped stays stopped: VM_NOT_RUNNING, nothing booted", async () => {
    const vm = setup("stopped", "stopped");
    await assert.rejects(echo(vm), { code: "VM_NOT_RUNNING" });
    assert.deepEqual(engine.calls, [`getVm ${vm}`]);
    assert.equal(activity.isBusy(vm), false);
    const peek = await gateway.withVm(alice, vm, { wake: false }, async (v) => v.running);
    assert.equal(peek, false, "wake: false reports it without waking it");
  });

  it("open: the hold lasts until release(), which is idempotent; a failing open releases it itself", async () => {
    const vm = setup("running", "running");
    const h = await gateway.open(alice, vm, {}, async () => "stream");
    assert.equal(h.value, "stream");
    assert.equal(activity.isBusy(vm), true);
    const other = await gateway.open(alice, vm, {}, async () => "second");
    h.release();
    h.release();
    assert.equal(activity.isBusy(vm), true, "a second release does not end someone else's hold");
    other.release();
    assert.equal(activity.isBusy(vm), false);
    await assert.rejects(gateway.open(alice, vm, {}, (_v, guest) => guest.exec({ command: "agent says no" })));
    assert.equal(activity.isBusy(vm), false);
  });

  it("errors go through the one mapping, with the route's code for invalid input", async () => {
    const vm = setup("running", "running");
    const refused = (badRequest?: "FILES_BAD_REQUEST") => gateway.withVm(alice, vm, badRequest ? { badRequest } : {}, (_v, guest) => guest.exec({ command: "agent says no" }));
    await assert.rejects(refused(), { code: "BAD_REQUEST" });
    await assert.rejects(refused("FILES_BAD_REQUEST"), { code: "FILES_BAD_REQUEST" });
    engine.state.set(vm, "stopping");
    await assert.rejects(echo(vm), { code: "VM_NOT_RUNNING" });
  });
});

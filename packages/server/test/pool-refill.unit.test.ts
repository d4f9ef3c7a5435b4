/**
 * When the warm pool refills, on mocked timers with an engine stand-in whose boots finish at
 * once (no sandbox needed): the policy alone, and freezing warm VMs until they are taken. Booting,
 * claiming and isolation on real sandboxes are in pool.test.ts.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, mock } from "node:test";
import type { Engine, VmInfo, VmLimits } from "@capsule/engine";
import pino from "pino";
import { WarmPool, type PoolKind } from "../src/vms/pool.js";

const LIMITS: VmLimits = { memoryMb: 512, cpus: 1, pids: 512, diskMb: 1024 };
const KIND: PoolKind = { limits: LIMITS, egress: "none" };
const realImmediate = setImmediate;

/**
 * createVm, deleteVm, the readiness check's exec, freezeVm and thawVm, each call counted; a boot
 * is a VM record, ready at once. `frozen` is which VMs are frozen now.
 */
class EngineStandIn {
  boots = 0;
  deletes = 0;
  checks = 0;
  checkExit = 0;
  readonly frozen = new Set<string>();
  readonly deleted: string[] = [];
  /** VMs whose thaw fails. */
  readonly stuck = new Set<string>();
  readonly guest = {
    exec: async () => {
      this.checks++;
      return { exitCode: this.checkExit, signal: null, timedOut: false, stdout: "", stderr: "", truncated: false };
    },
  };
  async createVm(opts: { limits: VmLimits; owner: string }): Promise<VmInfo> {
    this.boots++;
    return { id: `vm${this.boots}`, state: "running", runtime: "runsc", image: "trixie", limits: opts.limits, egress: "none", owner: opts.owner, createdAt: new Date().toISOString() };
  }
  async deleteVm(id: string): Promise<void> {
    this.deletes++;
    this.deleted.push(id);
    this.frozen.delete(id);
  }
  async freezeVm(id: string): Promise<boolean> {
    this.frozen.add(id);
    return true;
  }
  async thawVm(id: string): Promise<void> {
    if (this.stuck.has(id)) throw new Error(`cannot thaw ${id}`);
    this.frozen.delete(id);
  }
}

describe("warm pool refill policy", () => {
  let engine: EngineStandIn;
  let pool: WarmPool;
  let busy = false;

  /** Lets the stand-in's promises and the pool's follow-ups run. */
  const settle = async () => {
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => realImmediate(r));
      mock.timers.tick(0);
    }
  };
  const advance = async (ms: number) => {
    for (let t = 0; t < ms; t += 50) {
      mock.timers.tick(50);
      await settle();
    }
  };

  beforeEach(async () => {
    mock.timers.enable({ apis: ["setTimeout", "setInterval", "setImmediate", "Date"], now: 1_000_000 });
    engine = new EngineStandIn();
    busy = false;
    pool = new WarmPool(
      { size: 4, hotSize: 0, hotKinds: 0, hotTtlSeconds: 600, maxMemoryMb: 1 << 20, bootConcurrency: 4, minHostAvailableMb: 0 },
      {
        engine: engine as unknown as Engine,
        log: pino({ level: "silent" }),
        defaultKind: () => KIND,
        admitHost: async () => ({ release: () => undefined }) as never,
        busy: () => busy,
        hostAvailableMb: () => 1 << 20,
      },
    );
    pool.start();
    await settle();
    assert.equal(pool.stats().ready, 4, "the pool fills at start");
    assert.equal(engine.checks, 4, "each warm VM ran its readiness check");
    assert.deepEqual([...engine.frozen].sort(), ["vm1", "vm2", "vm3", "vm4"], "and waits frozen");
  });

  afterEach(async () => {
    await pool.close();
    mock.timers.reset();
  });

  it("a pool with warm VMs left refills only once creates pause, not between them", async () => {
    assert.ok(await pool.take(KIND));
    await advance(600);
    assert.equal(engine.boots, 4, "no boot 600 ms after a claim while 3 of 4 are warm");
    await advance(600);
    assert.equal(engine.boots, 5, "one boot once a second passed without a claim");
    assert.equal(pool.stats().ready, 4);
  });

  it("while commands run, that refill waits for them, up to a bound", async () => {
    busy = true;
    assert.ok(await pool.take(KIND));
    await advance(3000);
    assert.equal(engine.boots, 4, "no boot while commands run, 3 s after the claim");
    await advance(2200);
    assert.equal(engine.boots, 5, "the refill runs 5 s after the claim even though commands still run");
  });

  it("a pool about to run dry refills right after the claim", async () => {
    for (let i = 0; i < 3; i++) assert.ok(await pool.take(KIND));
    await advance(200);
    assert.equal(engine.boots, 7, "1 of 4 left (the low-water mark): the 3 missing boot at once");
  });

  it("a dry pool waits for running commands at most 2 s", async () => {
    busy = true;
    for (let i = 0; i < 4; i++) assert.ok(await pool.take(KIND));
    assert.equal(await pool.take(KIND), undefined, "empty: a create boots its own");
    await advance(1500);
    assert.equal(engine.boots, 4, "no boot while commands run, 1.5 s after the claims");
    await advance(700);
    assert.equal(engine.boots, 8);
  });

  it("a VM that fails its readiness check is deleted, never handed out, and its kind backs off", async () => {
    engine.checkExit = 1;
    for (let i = 0; i < 4; i++) assert.ok(await pool.take(KIND));
    await advance(200);
    assert.equal(engine.boots, 8, "the dry pool booted 4");
    assert.equal(pool.stats().ready, 0, "none of them joined the pool");
    assert.equal(engine.deletes, 4, "each was deleted");
    assert.equal(await pool.take(KIND), undefined);
    await advance(3000);
    assert.equal(engine.boots, 8, "no boot during the back-off");
  });

  it("a taken VM is thawed before it is handed out; one put back is frozen again", async () => {
    const vm = await pool.take(KIND);
    assert.equal(vm?.id, "vm1");
    assert.ok(!engine.frozen.has("vm1"), "thawed before the create gets it");
    assert.equal(engine.frozen.size, 3, "the others stay frozen");
    pool.putBack(vm!);
    await settle();
    assert.ok(engine.frozen.has("vm1"), "warm again, frozen again");
    assert.equal((await pool.take(KIND))?.id, "vm1", "and the next create gets it first");
  });

  it("a VM that does not thaw is deleted and the take falls back to the next, then to none", async () => {
    engine.stuck.add("vm1");
    engine.stuck.add("vm2");
    const vm = await pool.take(KIND);
    assert.equal(vm?.id, "vm3", "the two stuck VMs were skipped");
    assert.deepEqual(engine.deleted, ["vm1", "vm2"], "and deleted");
    assert.equal(pool.stats().hits, 1);
    engine.stuck.add("vm4");
    assert.equal(await pool.take(KIND), undefined, "no VM left that thaws: the create boots its own");
    assert.deepEqual(engine.deleted, ["vm1", "vm2", "vm4"]);
    assert.equal(pool.stats().misses, 1);
  });

  it("a VM the runtime cannot freeze stays warm, running, and is handed out", async () => {
    await pool.close();
    engine = new EngineStandIn();
    engine.freezeVm = async () => {
      throw new Error("no freezer");
    };
    pool = new WarmPool(
      { size: 1, hotSize: 0, hotKinds: 0, hotTtlSeconds: 600, maxMemoryMb: 1 << 20, bootConcurrency: 1, minHostAvailableMb: 0 },
      { engine: engine as unknown as Engine, log: pino({ level: "silent" }), defaultKind: () => KIND, admitHost: async () => ({ release: () => undefined }) as never, hostAvailableMb: () => 1 << 20 },
    );
    pool.start();
    await settle();
    assert.equal(pool.stats().ready, 1);
    assert.equal((await pool.take(KIND))?.id, "vm1");
  });

  it("adopted warm VMs (thawed by the engine's recovery) are frozen again", async () => {
    const left: VmInfo = { id: "old1", state: "running", runtime: "runsc", image: "trixie", limits: LIMITS, egress: "none", owner: pool.ownerOf({ limits: LIMITS, egress: "none" } as VmInfo), createdAt: new Date().toISOString() };
    await pool.adopt([left]);
    assert.ok(engine.frozen.has("old1"));
    assert.equal(pool.stats().ready, 5);
  });
});

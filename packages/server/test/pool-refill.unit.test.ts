/**
 * When the warm pool refills, on mocked timers with an engine stand-in whose boots finish at
 * once (no sandbox needed): the policy alone. Booting, claiming and isolation on real sandboxes
 * are in pool.test.ts.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, mock } from "node:test";
import type { Engine, VmInfo, VmLimits } from "@capsule/engine";
import pino from "pino";
import { WarmPool, type PoolKind } from "../src/vms/pool.js";

const LIMITS: VmLimits = { memoryMb: 512, cpus: 1, pids: 512, diskMb: 1024 };
const KIND: PoolKind = { limits: LIMITS, egress: "none" };
const realImmediate = setImmediate;

/** createVm, deleteVm and the readiness check's exec, each call counted; a boot is a VM record, ready at once. */
class EngineStandIn {
  boots = 0;
  deletes = 0;
  checks = 0;
  checkExit = 0;
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
  async deleteVm(): Promise<void> {
    this.deletes++;
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
  });

  afterEach(async () => {
    await pool.close();
    mock.timers.reset();
  });

  it("a pool with warm VMs left refills only once creates pause, not between them", async () => {
    assert.ok(pool.take(KIND));
    await advance(600);
    assert.equal(engine.boots, 4, "no boot 600 ms after a claim while 3 of 4 are warm");
    await advance(600);
    assert.equal(engine.boots, 5, "one boot once a second passed without a claim");
    assert.equal(pool.stats().ready, 4);
  });

  it("while commands run, that refill waits for them, up to a bound", async () => {
    busy = true;
    assert.ok(pool.take(KIND));
    await advance(3000);
    assert.equal(engine.boots, 4, "no boot while commands run, 3 s after the claim");
    await advance(2200);
    assert.equal(engine.boots, 5, "the refill runs 5 s after the claim even though commands still run");
  });

  it("a pool about to run dry refills right after the claim", async () => {
    for (let i = 0; i < 3; i++) assert.ok(pool.take(KIND));
    await advance(200);
    assert.equal(engine.boots, 7, "1 of 4 left (the low-water mark): the 3 missing boot at once");
  });

  it("a dry pool waits for running commands at most 2 s", async () => {
    busy = true;
    for (let i = 0; i < 4; i++) assert.ok(pool.take(KIND));
    assert.equal(pool.take(KIND), undefined, "empty: a create boots its own");
    await advance(1500);
    assert.equal(engine.boots, 4, "no boot while commands run, 1.5 s after the claims");
    await advance(700);
    assert.equal(engine.boots, 8);
  });

  it("a VM that fails its readiness check is deleted, never handed out, and its kind backs off", async () => {
    engine.checkExit = 1;
    for (let i = 0; i < 4; i++) assert.ok(pool.take(KIND));
    await advance(200);
    assert.equal(engine.boots, 8, "the dry pool booted 4");
    assert.equal(pool.stats().ready, 0, "none of them joined the pool");
    assert.equal(engine.deletes, 4, "each was deleted");
    assert.equal(pool.take(KIND), undefined);
    await advance(3000);
    assert.equal(engine.boots, 8, "no boot during the back-off");
  });
});

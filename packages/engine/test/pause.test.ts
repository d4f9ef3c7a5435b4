/**
 * Pause keeps memory: a paused VM's processes stop where they are and go on from there when it
 * starts again, also after the engine was closed and opened again on the same data dir.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Engine } from "../src/index.js";
import { AGENT_BUNDLE, IMAGES_DIR, destroyAll, hostGap } from "../test-support/harness.js";

/** A counter that lives only in the shell's memory, written out every 50 ms. */
const COUNTER = "nohup sh -c 'i=0; while true; do i=$((i+1)); echo $i > /root/count.new; mv /root/count.new /root/count; sleep 0.05; done' >/dev/null 2>&1 &";

async function count(engine: Engine, id: string): Promise<number> {
  return Number((await engine.guest.readFile(id, "/root/count")).toString("utf8").trim());
}

describe("pause", () => {
  it("pause then start resumes a process where it was, across an engine restart; stop and delete work on a paused VM", async (ctx) => {
    const gap = await hostGap();
    if (gap) {
      if (process.env.CI) throw new Error(gap);
      return ctx.skip(gap);
    }
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-pause-"));
    const opts = { dataDir, imagesDir: IMAGES_DIR, agentBundleDir: AGENT_BUNDLE };
    let engine = await Engine.open(opts);
    try {
      const { id } = await engine.createVm();
      await engine.guest.exec(id, { command: COUNTER });
      await sleep(500);
      assert.equal((await engine.pauseVm(id)).state, "paused");
      assert.equal((await engine.pauseVm(id)).state, "paused", "pausing a paused VM is a no-op");
      await assert.rejects(engine.guest.exec(id, { command: "true" }), /paused.*start it first/);
      // The counter's value at the pause is what the file holds now (the loop writes, then sleeps).
      const host = path.join(dataDir, "vms", id, "disk", "upper", "root", "count");
      const atPause = Number((await fs.readFile(host, "utf8")).trim());
      assert.ok(atPause > 3, `the counter ran before the pause (${atPause})`);
      await sleep(500);
      assert.equal(Number((await fs.readFile(host, "utf8")).trim()), atPause, "nothing runs while paused");

      // An engine restart keeps it paused.
      await engine.close();
      engine = await Engine.open(opts);
      assert.deepEqual(engine.recovery.paused, [id]);
      assert.equal((await engine.getVm(id)).state, "paused");

      assert.equal((await engine.startVm(id)).state, "running");
      await sleep(300);
      const after = await count(engine, id);
      // From where it was, not from 0: a fresh loop would be at 6 or less by now.
      assert.ok(after > atPause && after < atPause + 20, `counting on from ${atPause}: ${after}`);

      await engine.pauseVm(id);
      assert.equal((await engine.stopVm(id)).state, "stopped", "a paused VM can be stopped");
      assert.equal((await engine.startVm(id)).state, "running");
      await engine.pauseVm(id);
      await engine.deleteVm(id, { wait: true });
      await assert.rejects(engine.getVm(id), /not found/);
    } finally {
      await destroyAll({ engine, dataDir }).catch(() => undefined);
    }
  });
});

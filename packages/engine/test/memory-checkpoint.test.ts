/**
 * memory/checkpoint.ts on an engine VM (netstack): the VM goes on after its checkpoint (a
 * counter in memory keeps counting, the agent answers again), the image is written, the layer
 * copy holds a file written just before; a save runsc refuses (an agent that was not prepared
 * still listens on its host socket) rejects and leaves the VM running and answering.
 * Restoring into a new VM needs a second netns, rootfs and run dir from the engine: that is
 * packages/agent/scripts/ckpt-lab.mjs for now (docs/memory-snapshots-spike.md).
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { runscNetworkFlags } from "../src/runtime/runsc.js";
import { checkpointVm, type RunscCli } from "../src/memory/checkpoint.js";
import { Paths } from "../src/paths.js";
import { RUNSC_OPTIONS, useEngine } from "../test-support/harness.js";

const COUNTER = "nohup sh -c 'i=0; while true; do i=$((i+1)); echo $i > /root/count.new; mv /root/count.new /root/count; sleep 0.05; done' >/dev/null 2>&1 &";

describe("memory checkpoint of an engine VM", () => {
  const env = useEngine();

  it("the VM runs on after its checkpoint; a refused save leaves it running", async (ctx) => {
    const gap = env.skip();
    if (gap) return ctx.skip(gap);
    const { engine, dataDir } = env.get();
    if (!engine.features.checkpoint) return ctx.skip(`runsc cannot checkpoint on the ${engine.features.network} network stack`);
    const paths = new Paths(dataDir);
    const rt: RunscCli = { bin: RUNSC_OPTIONS.runscPath ?? "runsc", root: `${paths.runtimeRoot}/runsc`, sandboxFlags: runscNetworkFlags("netstack") };
    const { id } = await engine.createVm();
    const vm = paths.vm(id);
    await engine.guest.exec(id, { command: `${COUNTER} echo before > /root/before` });
    await sleep(300);
    const scratch = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-memory-"));
    try {
      const out = { imageDir: path.join(scratch, "image"), upperCopy: path.join(scratch, "upper") };
      const t = await checkpointVm(rt, { id, runDir: vm.run, upperDir: vm.upper, prepare: () => engine.guest.checkpointPrepare(id) }, out);
      ctx.diagnostic(`checkpoint: ${JSON.stringify(t)}`);
      assert.ok((await fs.readdir(out.imageDir)).length > 0, "runsc wrote an image");
      assert.equal(await fs.readFile(path.join(out.upperCopy, "root", "before"), "utf8"), "before\n");
      const copied = Number(await fs.readFile(path.join(out.upperCopy, "root", "count"), "utf8"));
      // The agent listens again within its poll of the marker; the counter went on.
      let after = 0;
      for (let i = 0; i < 100 && after <= copied; i++) {
        after = await engine.guest
          .readFile(id, "/root/count")
          .then((b) => Number(b.toString()))
          .catch(() => 0);
        if (after <= copied) await sleep(20);
      }
      assert.ok(after > copied, `the counter went on after the checkpoint (${copied} -> ${after})`);

      // Not prepared: runsc refuses to save the agent's listening host socket.
      await assert.rejects(checkpointVm(rt, { id, runDir: vm.run, upperDir: vm.upper, prepare: async () => undefined }, { imageDir: path.join(scratch, "refused"), upperCopy: path.join(scratch, "refused-upper") }));
      assert.equal((await engine.guest.exec(id, { command: "echo alive" })).stdout, "alive\n");
    } finally {
      await fs.rm(scratch, { recursive: true, force: true });
    }
  });
});

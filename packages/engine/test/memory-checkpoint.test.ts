/**
 * memory/checkpoint.ts on an engine VM (netstack): the VM goes on after its checkpoint (a
 * counter in memory keeps counting, the agent answers again), the image is written, the layer
 * copy holds a file written just before; a save runsc refuses (an agent that was not prepared
 * still listens on its host socket) rejects and leaves the VM running and answering.
 * Restores through the engine's API are memory-snapshot.test.ts.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { copyLayer } from "../src/disk/layers.js";
import { RunscRuntime } from "../src/runtime/runsc.js";
import { checkpointVm, maxImageBytes } from "../src/memory/checkpoint.js";
import { Paths } from "../src/paths.js";
import { useEngine } from "../test-support/harness.js";

const COUNTER = "nohup sh -c 'i=0; while true; do i=$((i+1)); echo $i > /root/count.new; mv /root/count.new /root/count; sleep 0.05; done' >/dev/null 2>&1 &";

describe("memory checkpoint of an engine VM", () => {
  const env = useEngine();

  it("the VM runs on after its checkpoint; a refused save leaves it running", async (ctx) => {
    const gap = env.skip();
    if (gap) return ctx.skip(gap);
    const { engine, dataDir } = env.get();
    if (!engine.features.checkpoint) return ctx.skip(`runsc cannot checkpoint on the ${engine.features.network} network stack`);
    const paths = new Paths(dataDir);
    const rt = new RunscRuntime(engine.options.runscPath, `${paths.runtimeRoot}/runsc`, engine.options.runscPlatform, "netstack");
    const { id } = await engine.createVm();
    const vm = paths.vm(id);
    await engine.guest.exec(id, { command: `${COUNTER} echo before > /root/before` });
    await sleep(300);
    const scratch = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-memory-"));
    try {
      const out = { imageDir: path.join(scratch, "image"), copyUpper: (upper: string) => copyLayer(upper, path.join(scratch, "upper")), maxImageBytes: maxImageBytes(2048) };
      const t = await checkpointVm(rt, { id, runDir: vm.run, upperDir: vm.upper, prepare: () => engine.guest.checkpointPrepare(id) }, out);
      ctx.diagnostic(`checkpoint: ${JSON.stringify(t)}`);
      assert.ok((await fs.readdir(out.imageDir)).length > 0, "runsc wrote an image");
      assert.equal(await fs.readFile(path.join(scratch, "upper.partial", "root", "before"), "utf8"), "before\n");
      const copied = Number(await fs.readFile(path.join(scratch, "upper.partial", "root", "count"), "utf8"));
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
      await assert.rejects(checkpointVm(rt, { id, runDir: vm.run, upperDir: vm.upper, prepare: async () => undefined }, { ...out, imageDir: path.join(scratch, "refused") }));
      assert.equal((await engine.guest.exec(id, { command: "echo alive" })).stdout, "alive\n");
    } finally {
      await fs.rm(scratch, { recursive: true, force: true });
    }
  });
});

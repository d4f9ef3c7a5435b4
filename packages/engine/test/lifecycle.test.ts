import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { Engine } from "../src/index.js";
import { AGENT_BUNDLE, IMAGES_DIR, countResources, destroyAll, hostGap } from "../test-support/harness.js";

const zero = { mounts: 0, vmDirs: 0, netns: 0, veths: 0, runtimeProcs: 0, nftElements: 0, loops: 0, cgroups: 0 };

async function scratch(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), "capsule-life-"));
}

describe("lifecycle", () => {
  it("50 create/exec/delete cycles leave no mount, netns, veth, nft rule, loop device or process", async (ctx) => {
    const gap = await hostGap();
    if (gap) {
      if (process.env.CI) throw new Error(gap);
      return ctx.skip(gap);
    }
    const dataDir = await scratch();
    const engine = await Engine.open({ dataDir, imagesDir: IMAGES_DIR, agentBundleDir: AGENT_BUNDLE });
    const ids: string[] = [];
    try {
      for (let i = 0; i < 50; i++) {
        const vm = await engine.createVm();
        ids.push(vm.id);
        const r = await engine.guest.exec(vm.id, { command: `echo cycle-${i}` });
        assert.equal(r.stdout, `cycle-${i}\n`);
        await engine.deleteVm(vm.id, { wait: i % 2 === 0 }); // half of them finish in the background
      }
      await engine.close(); // waits for background deletes
      assert.deepEqual(await countResources(dataDir, ids), zero);
    } finally {
      await destroyAll({ engine, dataDir }).catch(() => undefined);
    }
  });

  it("SIGKILL of the engine's process mid-create leaves no orphan and loses no stopped VM or snapshot", async (ctx) => {
    const gap = await hostGap();
    if (gap) {
      if (process.env.CI) throw new Error(gap);
      return ctx.skip(gap);
    }
    const dataDir = await scratch();
    const opts = { dataDir, imagesDir: IMAGES_DIR, agentBundleDir: AGENT_BUNDLE };
    let engine = await Engine.open(opts);
    const seen = new Set<string>();
    try {
      const stopped = (await engine.createVm()).id;
      await engine.guest.writeFile(stopped, "/srv/keep", "stopped-data");
      await engine.stopVm(stopped);
      const running = (await engine.createVm()).id;
      await engine.guest.writeFile(running, "/srv/keep", "running-data");
      const snap = await engine.snapshotVm(running);
      await engine.close();

      // Kill a child engine at several points of a create: early (records, disk), mid (network,
      // sandbox start) and late (agent wait).
      const indexJs = new URL("../src/index.js", import.meta.url).href;
      const script = `import { Engine } from ${JSON.stringify(indexJs)};
        const e = await Engine.open(${JSON.stringify(opts)});
        console.log("open");
        const vm = await e.createVm();
        console.log("created " + vm.id);`;
      // A create the kill came too late for (a fast host) finished: that VM is a finished one.
      const finished: string[] = [];
      for (const delayMs of [20, 150, 400]) {
        const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
        // Listened for at once: a create that finishes before the kill ends the child by itself.
        const exited = new Promise((r) => child.once("exit", r));
        let out = "";
        const opened = new Promise<void>((resolve) =>
          child.stdout.on("data", (d: Buffer) => {
            out += d.toString();
            if (out.includes("open")) resolve();
          }),
        );
        const exitedFirst = exited.then(() => Promise.reject(new Error(`the child engine exited before it opened: ${out}`)));
        exitedFirst.catch(() => undefined); // the usual case: it exits later, after the kill
        await Promise.race([opened, exitedFirst]);
        await new Promise((r) => setTimeout(r, delayMs));
        child.kill("SIGKILL");
        await exited;
        const done = /created (\S+)/.exec(out)?.[1];
        if (done) finished.push(done);
        for (const d of await fs.readdir(path.join(dataDir, "vms"))) if (d !== running && d !== stopped && !finished.includes(d)) seen.add(d);
      }
      assert.ok(seen.size > 0, "at least one create was caught mid-way");
      const killed = [...seen];

      engine = await Engine.open(opts);
      const vms = await engine.listVms();
      const ids = vms.map((v) => v.id).sort();
      assert.deepEqual(ids, [running, stopped, ...finished].sort(), "only the finished VMs remain");
      assert.equal(vms.find((v) => v.id === stopped)?.state, "stopped");
      assert.equal(vms.find((v) => v.id === running)?.state, "running", "a running VM is adopted");
      assert.equal((await engine.guest.readFile(running, "/srv/keep")).toString(), "running-data");
      await engine.startVm(stopped);
      assert.equal((await engine.guest.readFile(stopped, "/srv/keep")).toString(), "stopped-data");
      const fromSnap = (await engine.createVm({ snapshotId: snap.id })).id;
      assert.equal((await engine.guest.readFile(fromSnap, "/srv/keep")).toString(), "running-data");

      // Nothing of the killed creates survives; the live VMs hold what they should.
      assert.deepEqual(await countResources(dataDir, killed), zero);
      const live = await countResources(dataDir, [running, stopped, fromSnap]);
      assert.equal(live.vmDirs, 3);
      assert.equal(live.netns, 3);
      assert.equal(live.loops, 3);
      seen.add(running).add(stopped).add(fromSnap);
      for (const id of finished) seen.add(id);
    } finally {
      await destroyAll({ engine, dataDir });
    }
    assert.deepEqual(await countResources(dataDir, [...seen]), zero);
  });

  it("refuses a second engine on the same data dir", async (ctx) => {
    const gap = await hostGap();
    if (gap) {
      if (process.env.CI) throw new Error(gap);
      return ctx.skip(gap);
    }
    const dataDir = await scratch();
    const engine = await Engine.open({ dataDir, imagesDir: IMAGES_DIR, agentBundleDir: AGENT_BUNDLE });
    try {
      await fs.writeFile(path.join(dataDir, "engine.lock"), String(process.ppid)); // a live process holds it
      await assert.rejects(Engine.open({ dataDir, imagesDir: IMAGES_DIR, agentBundleDir: AGENT_BUNDLE }), { code: "ENGINE_LOCKED" });
    } finally {
      await destroyAll({ engine, dataDir });
    }
  });
});

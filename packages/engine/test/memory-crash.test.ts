/**
 * A server killed mid-checkpoint (SIGKILL once the agent went deaf, during runsc's save, during
 * the layer copy) leaves no half-made snapshot: the next open removes the partial image and
 * layer, and the source VM runs again with its agent answering (recovery resumes a sandbox runsc
 * reports paused and wakes a deaf agent). A server killed mid-restore leaves no orphan sandbox:
 * the `creating` VM is torn down, and so are a fork's copies killed while their targets were being
 * made ahead, and a restore target made ahead for the next create. The engine runs in a child process, killed when the phase's
 * own evidence appears on disk; nothing in the engine knows it is being tested.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Engine, type EngineOptions } from "../src/index.js";
import { AGENT_BUNDLE, IMAGES_DIR, RUNSC_OPTIONS, countResources, destroyAll, sandboxGap } from "../test-support/harness.js";

const COUNTER = "nohup sh -c 'i=0; while true; do i=$((i+1)); echo $i > /root/count.new; mv /root/count.new /root/count; sleep 0.05; done' >/dev/null 2>&1 &";
/** How long a phase's evidence may take to appear, and a value to move. */
const PHASE_LIMIT_MS = 60_000;
/** How often the parent looks for the evidence (the save lasts ~200 ms, the copy of BIG_FILE_MB longer). */
const POLL_MS = 2;
/** Written in the VM so the layer copy lasts long enough to be caught. */
const BIG_FILE_MB = 300;

/** Runs `body` (a module's text, with ENGINE_OPTS and Engine in scope) in a child process. */
function child(opts: EngineOptions, body: string): ChildProcess {
  const src = JSON.stringify(new URL("../src/index.js", import.meta.url).href);
  const script = `import { Engine } from ${src};\nconst engine = await Engine.open(${JSON.stringify(opts)});\n${body}\nawait engine.close();`;
  return spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "inherit", "inherit"] });
}

/** Polls `seen` and SIGKILLs `proc` the moment it is true; resolves with how the child ended. */
async function killWhen(proc: ChildProcess, seen: () => Promise<boolean>, what: string): Promise<{ killed: boolean }> {
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => proc.once("exit", (code, signal) => resolve(signal ?? code)));
  let done = false;
  void exited.then(() => (done = true));
  const deadline = Date.now() + PHASE_LIMIT_MS;
  while (!done && !(await seen())) {
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`${what} never appeared within ${PHASE_LIMIT_MS} ms`);
    }
    await sleep(POLL_MS);
  }
  if (!done) proc.kill("SIGKILL");
  return { killed: (await exited) === "SIGKILL" };
}

const exists = (p: string) => fs.access(p).then(() => true, () => false);
const partialIn = async (dir: string) => (await fs.readdir(dir).catch(() => [] as string[])).some((e) => e.endsWith(".partial"));

async function count(engine: Engine, id: string): Promise<number> {
  return Number((await engine.guest.readFile(id, "/root/count")).toString("utf8").trim());
}

async function movesPast(read: () => Promise<number>, floor: number): Promise<void> {
  const deadline = Date.now() + PHASE_LIMIT_MS;
  while (!((await read().catch(() => Number.NaN)) > floor)) {
    if (Date.now() > deadline) throw new Error(`the counter did not move past ${floor}`);
    await sleep(50);
  }
}

describe("memory checkpoints and restores cut by a crash", () => {
  it("a kill mid-checkpoint leaves no half-made snapshot and the source running; a kill mid-restore or while a fork makes its targets leaves no orphan sandbox", async (ctx) => {
    const gap = await sandboxGap();
    if (gap) return ctx.skip(gap);
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-memcrash-"));
    const opts: EngineOptions = { dataDir, imagesDir: IMAGES_DIR, agentBundleDir: AGENT_BUNDLE, ...RUNSC_OPTIONS };
    let engine = await Engine.open(opts);
    // Closed while a child holds the data dir; the clean-up opens it again if a step failed then.
    let closed = false;
    const close = async () => {
      await engine.close();
      closed = true;
    };
    const reopen = async () => {
      engine = await Engine.open(opts);
      closed = false;
    };
    try {
      if (!engine.features.checkpoint) return ctx.skip(`runsc cannot checkpoint on the ${engine.features.network} network stack`);
      const { id } = await engine.createVm();
      await engine.guest.exec(id, { command: `${COUNTER} dd if=/dev/zero of=/root/big bs=1M count=${BIG_FILE_MB} status=none` });
      await movesPast(() => count(engine, id), 2);
      const socket = path.join(dataDir, "vms", id, "guest", "run", "agent.sock");
      const phases: Array<[string, () => Promise<boolean>]> = [
        ["the agent gone deaf (after ckpt.prepare)", async () => !(await exists(socket))],
        ["runsc's save (a partial image)", () => partialIn(path.join(dataDir, "memory"))],
        ["the layer copy (a partial layer)", () => partialIn(path.join(dataDir, "layers"))],
      ];
      for (const [what, seen] of phases) {
        await close();
        const snapshotter = child(opts, `await engine.snapshotVm(${JSON.stringify(id)}, { memory: true });`);
        const { killed } = await killWhen(snapshotter, seen, what);
        assert.ok(killed, `the child was killed at ${what}, not done before it`);
        await reopen();
        ctx.diagnostic(`after a kill at ${what}: ${JSON.stringify(engine.recovery)}`);
        assert.deepEqual(engine.recovery.adopted, [id], `the source is adopted after a kill at ${what}`);
        assert.deepEqual(await engine.listSnapshots(), []);
        assert.deepEqual(await fs.readdir(path.join(dataDir, "memory")).catch(() => []), [], "no image, partial or whole");
        assert.deepEqual(await fs.readdir(path.join(dataDir, "layers")).catch(() => []), [], "no layer, partial or whole");
        assert.equal((await engine.guest.exec(id, { command: "echo alive" })).stdout, "alive\n");
        await movesPast(() => count(engine, id), await count(engine, id));
      }

      const snap = await engine.snapshotVm(id, { memory: true });
      await close();
      const vmsBefore = new Set(await fs.readdir(path.join(dataDir, "vms")));
      const restorer = child(opts, `await engine.createVm({ snapshotId: ${JSON.stringify(snap.id)} });`);
      const restoring = async () => {
        for (const e of await fs.readdir("/proc")) {
          const argv = await fs.readFile(`/proc/${e}/cmdline`, "utf8").catch(() => "");
          if (argv.includes(`${dataDir}/`) && argv.split("\0").includes("restore")) return true;
        }
        return false;
      };
      const { killed } = await killWhen(restorer, restoring, "runsc restore");
      assert.ok(killed, "the child was killed while runsc restored");
      const [copy] = (await fs.readdir(path.join(dataDir, "vms"))).filter((v) => !vmsBefore.has(v));
      assert.ok(copy, "the restore had made its VM's record");
      await reopen();
      assert.deepEqual(engine.recovery.removed, [copy]);
      assert.deepEqual((await engine.listVms()).map((v) => v.id), [id]);
      await engine.settled();
      assert.deepEqual(await countResources(dataDir, [copy]), { mounts: 0, vmDirs: 0, netns: 0, veths: 0, runtimeProcs: 0, nftElements: 0, loops: 0, cgroups: 0 });
      // The snapshot is whole and still restores.
      const again = await engine.createVm({ snapshotId: snap.id });
      assert.equal((await engine.guest.exec(again.id, { command: "hostname" })).stdout, `${again.id}\n`);

      // A kill while a fork makes its copies' targets ahead (`runsc create`, during the source's
      // save): each target is made under its copy's own `creating` record, which recovery removes.
      await close();
      const vmsBeforeFork = new Set(await fs.readdir(path.join(dataDir, "vms")));
      const forker = child(opts, `await engine.forkVm(${JSON.stringify(id)}, { memory: true, count: 2 });`);
      const creatingTarget = async () => {
        for (const e of await fs.readdir("/proc")) {
          const argv = (await fs.readFile(`/proc/${e}/cmdline`, "utf8").catch(() => "")).split("\0");
          if (argv.includes("create") && argv.some((a) => a.startsWith(`--bundle=${dataDir}/`))) return true;
        }
        return false;
      };
      const forkKill = await killWhen(forker, creatingTarget, "runsc create of a fork's copy");
      assert.ok(forkKill.killed, "the child was killed while a copy's target was made");
      const forkCopies = (await fs.readdir(path.join(dataDir, "vms"))).filter((v) => !vmsBeforeFork.has(v)).sort();
      assert.ok(forkCopies.length > 0, "the fork had made its copies' records");
      await reopen();
      assert.deepEqual([...engine.recovery.removed].sort(), forkCopies);
      assert.deepEqual((await engine.listVms()).map((v) => v.id).sort(), [id, again.id].sort());
      await engine.settled();
      assert.deepEqual(await countResources(dataDir, forkCopies), { mounts: 0, vmDirs: 0, netns: 0, veths: 0, runtimeProcs: 0, nftElements: 0, loops: 0, cgroups: 0 });
      assert.equal((await engine.guest.exec(id, { command: "echo alive" })).stdout, "alive\n");

      // A kill while a restore target made ahead waits for the next create from the snapshot: its
      // `creating` record (the engine's own) is removed with every resource.
      await close();
      const marker = path.join(os.tmpdir(), `capsule-memcrash-target-${path.basename(dataDir)}`);
      const preparer = child(
        opts,
        `const created = await engine.createVm({ snapshotId: ${JSON.stringify(snap.id)} });
        for (;;) {
          const t = engine.preparedRestore();
          if (t?.made) {
            const fs = await import("node:fs/promises");
            await fs.writeFile(${JSON.stringify(`${marker}.tmp`)}, created.id + " " + t.vmId);
            await fs.rename(${JSON.stringify(`${marker}.tmp`)}, ${JSON.stringify(marker)});
            break;
          }
          await new Promise((r) => setTimeout(r, 20));
        }
        setInterval(() => undefined, 1000);
        await new Promise(() => undefined);`,
      );
      try {
        const prepKill = await killWhen(preparer, () => exists(marker), "a restore target made ahead");
        assert.ok(prepKill.killed, "the child was killed while its target waited");
        const [created = "", target = ""] = (await fs.readFile(marker, "utf8")).split(" ");
        await reopen();
        assert.ok(engine.recovery.removed.includes(target), `the target ${target} is removed: ${JSON.stringify(engine.recovery)}`);
        assert.deepEqual((await engine.listVms()).map((v) => v.id).sort(), [id, again.id, created].sort());
        await engine.settled();
        assert.deepEqual(await countResources(dataDir, [target]), { mounts: 0, vmDirs: 0, netns: 0, veths: 0, runtimeProcs: 0, nftElements: 0, loops: 0, cgroups: 0 });
      } finally {
        await fs.rm(marker, { force: true });
        await fs.rm(`${marker}.tmp`, { force: true });
      }
    } finally {
      if (closed) await reopen().catch(() => undefined);
      await destroyAll({ engine, dataDir }).catch(() => undefined);
    }
  });
});

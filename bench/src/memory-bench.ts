/**
 * Memory benchmark (issue 15), the engine and raw runsc side by side in one run, samples
 * interleaved so host load hits both alike:
 *   npm run bench:memory                 (table: medians, p90, ratio of medians to raw)
 *   npm run bench:memory -- --json       (every sample and the summary as JSON)
 * Options: --samples N (default 5), --raw-fill-mb N (default 10: what the raw sandbox's Node holds
 * live, so that its memory image is about the size of an engine VM's; both sizes are printed).
 *
 * Cases, each capsule vs raw:
 * - pause/resume: `pauseVm`, then `startVm` + the first exec answered, vs `runsc pause`, then
 *   `runsc resume` + `runsc exec true`, of a plain raw sandbox (`sleep infinity`, as the other
 *   benches make theirs);
 * - wake from stop: `stopVm`, then (timed) `startVm` + the first exec answered, vs `runsc run` +
 *   `runsc exec true` of the plain raw sandbox: an idle VM's wake today, to set beside restore ->
 *   first exec (its wake if idle suspend saved its memory instead);
 * - memory snapshot: `snapshotVm(id, {memory: true})` vs `runsc checkpoint --leave-running
 *   --compression=none` of a raw sandbox of about the same size (the agent bundle's Node holding
 *   --raw-fill-mb);
 * - restore -> first exec: `createVm({snapshotId, memory: true})` + exec `true` answered vs
 *   `runsc restore --detach` + `runsc exec true`;
 * - restore into a target made ahead -> first exec: the next create from that snapshot, which
 *   takes the target the engine made after the first (untimed), vs `runsc create` (untimed), then
 *   `runsc restore --detach` into it + `runsc exec true`;
 * - fork of 3: `forkVm(id, {count: 3, memory: true})` + exec `true` answered in all three vs one
 *   `runsc checkpoint` + three `runsc restore` at once + `runsc exec true` in each.
 * The engine's memory cases are skipped, with the reason printed, where it cannot checkpoint the
 * VM (an engine on hostinet); a copy that the engine booted from disk instead of restoring is an
 * error, never a figure. Untimed check: a process started in the source before the capture is
 * alive in every restored copy.
 *
 * Needs root and a set-up host (scripts/setup.sh; runsc on PATH, the engine's network stack
 * netstack). Everything it makes (engine data dir, raw sandboxes, images) is under one scratch
 * dir and removed on every path, Ctrl-C included.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Engine, type SnapshotRecord, type VmInfo } from "@capsule/engine";
import { benchArgs, quantile, time } from "./measure.js";
import { RawRunsc, imageBytes } from "./raw-runsc.js";

const { asJson, num } = benchArgs();
const SAMPLES = num("--samples", 5);
const RAW_FILL_MB = num("--raw-fill-mb", 10);
if (!Number.isInteger(SAMPLES) || SAMPLES < 1 || !Number.isInteger(RAW_FILL_MB) || RAW_FILL_MB < 0) {
  throw new Error("usage: memory-bench [--samples N] [--raw-fill-mb N] [--json]");
}
const DATA = process.env.CAPSULE_DATA_DIR ?? "/var/lib/capsule";
const IMAGES = path.join(DATA, "images");
const AGENT = path.join(DATA, "agent");
const FORK_COUNT = 3;
/** How long the bench waits for the engine's restore target to be made after a create. */
const TARGET_WAIT_MS = 10_000;
const log = (msg: string) => void (asJson || console.error(msg));

/** The agent bundle's Node (the only one every image has), keeping `mb` MiB of non-zero pages live. */
const rawNodeArgs = (mb: number) => [
  "/.capsule/lib/ld-linux-x86-64.so.2", "--library-path", "/.capsule/lib", "/.capsule/bin/node",
  "-e", `globalThis.keep = Buffer.alloc(${mb} * 2 ** 20, 1); setInterval(() => {}, 2 ** 30);`,
];

interface Stat {
  n: number;
  p50: number;
  p90: number;
}
function stats(xs: number[]): Stat {
  return { n: xs.length, p50: quantile(xs, 0.5), p90: quantile(xs, 0.9) };
}

/** The samples of one case, both sides; `skipped` says why the capsule side has none. */
interface Case {
  capsule: number[];
  raw: number[];
  skipped?: string;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("memory-bench needs root (runsc, netns, mounts)");
  const scratch = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-memory-bench-"));
  const tag = `mem-${process.pid}`;
  const rootfs = path.join(IMAGES, "trixie", "rootfs");
  const plain = new RawRunsc(path.join(scratch, "raw-plain"), rootfs);
  const sized = new RawRunsc(path.join(scratch, "raw-node"), rootfs, {
    args: rawNodeArgs(RAW_FILL_MB),
    binds: [{ destination: "/.capsule", source: path.join(AGENT, "current") }],
  });
  const engine = await Engine.open({ dataDir: path.join(scratch, "data"), imagesDir: IMAGES, agentBundleDir: AGENT });
  const stop = new AbortController();
  const onSignal = () => stop.abort(new Error("interrupted"));
  process.once("SIGINT", onSignal).once("SIGTERM", onSignal);
  const cases: Record<string, Case> = {};
  const sizes: { capsuleImageBytes?: number; rawImageBytes?: number } = {};
  let imageSeq = 0;
  const newImageDir = () => path.join(scratch, `img-${imageSeq++}`);
  const exec = async (id: string, command: string) => {
    const r = await engine.guest.exec(id, { command });
    if (r.exitCode !== 0) throw new Error(`\`${command}\` in ${id} exited ${r.exitCode}: ${r.stderr.trim().slice(0, 200)}`);
    return r.stdout.trim();
  };
  const deleteVms = async (ids: string[]) => {
    for (const id of ids) await engine.deleteVm(id, { wait: true });
  };
  try {
    // --- pause/resume
    const pauseMs: Case = (cases.pause = { capsule: [], raw: [] });
    const resumeMs: Case = (cases.resumeToFirstExec = { capsule: [], raw: [] });
    const vm = (await engine.createVm()).id;
    await exec(vm, "true");
    const rawPlain = `${tag}-plain`;
    await plain.start(rawPlain);
    await plain.exec(rawPlain, "true");
    log(`pause/resume (${SAMPLES} samples each)`);
    for (let i = 0; i < SAMPLES; i++) {
      stop.signal.throwIfAborted();
      pauseMs.capsule.push(await time(() => engine.pauseVm(vm)));
      resumeMs.capsule.push(await time(async () => {
        await engine.startVm(vm);
        await exec(vm, "true");
      }));
      pauseMs.raw.push(await time(() => plain.pause(rawPlain)));
      resumeMs.raw.push(await time(async () => {
        await plain.resume(rawPlain);
        await plain.exec(rawPlain, "true");
      }));
    }
    await plain.destroy(rawPlain);

    // --- wake from stop: what an idle VM's next request waits for when idle stops it, beside
    // restore -> first exec below, what it would wait for if idle saved its memory instead
    const wake: Case = (cases.wakeFromStopToFirstExec = { capsule: [], raw: [] });
    log(`wake from stop (${SAMPLES} samples each)`);
    for (let i = 0; i < SAMPLES; i++) {
      stop.signal.throwIfAborted();
      await engine.stopVm(vm);
      wake.capsule.push(await time(async () => {
        await engine.startVm(vm);
        await exec(vm, "true");
      }));
      const rawWake = `${tag}-w${i}`;
      wake.raw.push(await time(async () => {
        await plain.start(rawWake);
        await plain.exec(rawWake, "true");
      }));
      await plain.destroy(rawWake);
    }

    // --- the raw sides of the memory cases, and the engine's where it has them
    const snap: Case = (cases.memorySnapshot = { capsule: [], raw: [] });
    const restore: Case = (cases.restoreToFirstExec = { capsule: [], raw: [] });
    const ahead: Case = (cases.restoreAheadToFirstExec = { capsule: [], raw: [] });
    const fork: Case = (cases.forkOf3 = { capsule: [], raw: [] });
    const skip = (await engine.canCheckpoint(vm))
      ? undefined
      : `the engine cannot checkpoint VM ${vm} (network stack ${engine.features.network}; memory snapshots need netstack)`;
    if (skip) {
      for (const c of [snap, restore, ahead, fork]) c.skipped = skip;
      log(`engine memory cases skipped: ${skip}`);
    }
    // A process the copies must still have: the capture took its memory, not just the disk.
    const witness = skip ? "" : await exec(vm, "nohup sleep 1000000 >/dev/null 2>&1 & echo $!");
    const assertRestored = async (copy: VmInfo, from: string) => {
      if (copy.restoredFrom !== from) throw new Error(`VM ${copy.id} was not restored from ${from} (restoredFrom ${copy.restoredFrom ?? "absent"}): a disk boot is not a memory figure`);
      await exec(copy.id, `kill -0 ${witness}`);
    };
    const targetMadeFor = async (snapshotId: string): Promise<string> => {
      for (const deadline = performance.now() + TARGET_WAIT_MS; ; await sleep(20)) {
        const t = engine.preparedRestore();
        if (t?.made && t.snapshotId === snapshotId) return t.vmId;
        if (performance.now() > deadline) throw new Error(`the engine made no restore target for ${snapshotId} within ${TARGET_WAIT_MS} ms`);
      }
    };
    const rawSrc = `${tag}-src`;
    await sized.start(rawSrc);
    await sized.exec(rawSrc, "true");

    log(`memory snapshot, restore -> first exec, fork of ${FORK_COUNT} (${SAMPLES} samples each)`);
    for (let i = 0; i < SAMPLES; i++) {
      stop.signal.throwIfAborted();
      // memory snapshot, then a VM restored from it
      if (!skip) {
        let s: SnapshotRecord | undefined;
        snap.capsule.push(await time(async () => (s = await engine.snapshotVm(vm, { memory: true }))));
        if (!s?.memory) throw new Error(`snapshot ${s?.id} of a memory snapshot has no memory record`);
        sizes.capsuleImageBytes = s.memory.bytes;
        let copy: VmInfo | undefined;
        restore.capsule.push(await time(async () => {
          copy = await engine.createVm({ snapshotId: s!.id, memory: true });
          await exec(copy.id, "true");
        }));
        await assertRestored(copy!, s.id);
        // The engine makes a target for the snapshot restored last; the next create takes it.
        const target = await targetMadeFor(s.id);
        let taken: VmInfo | undefined;
        ahead.capsule.push(await time(async () => {
          taken = await engine.createVm({ snapshotId: s!.id, memory: true });
          await exec(taken.id, "true");
        }));
        if (taken!.id !== target) throw new Error(`the create did not take the target made ahead (${target}) but made ${taken!.id}`);
        await assertRestored(taken!, s.id);
        await deleteVms([copy!.id, taken!.id]);
        await engine.deleteSnapshot(s.id);
      }
      const img = newImageDir();
      snap.raw.push(await time(() => sized.checkpoint(rawSrc, img)));
      sizes.rawImageBytes = await imageBytes(img);
      const rawCopy = `${tag}-r${i}`;
      restore.raw.push(await time(async () => {
        await sized.restore(rawCopy, img);
        await sized.exec(rawCopy, "true");
      }));
      await sized.destroy(rawCopy);
      // The same made ahead by hand: `runsc create`, then the timed restore into it.
      const rawAhead = `${tag}-a${i}`;
      await sized.create(rawAhead);
      ahead.raw.push(await time(async () => {
        await sized.restore(rawAhead, img, { created: true });
        await sized.exec(rawAhead, "true");
      }));
      await sized.destroy(rawAhead);
      await fs.rm(img, { recursive: true });

      // fork of 3
      if (!skip) {
        let copies: VmInfo[] = [];
        fork.capsule.push(await time(async () => {
          copies = await engine.forkVm(vm, { count: FORK_COUNT, memory: true });
          await Promise.all(copies.map((c) => exec(c.id, "true")));
        }));
        if (copies.length !== FORK_COUNT) throw new Error(`forkVm gave ${copies.length} copies, not ${FORK_COUNT}`);
        for (const c of copies) await assertRestored(c, vm);
        await deleteVms(copies.map((c) => c.id));
      }
      const forkImg = newImageDir();
      const forkIds = Array.from({ length: FORK_COUNT }, (_, k) => `${tag}-f${i}-${k}`);
      fork.raw.push(await time(async () => {
        await sized.checkpoint(rawSrc, forkImg);
        await Promise.all(forkIds.map(async (id) => {
          await sized.restore(id, forkImg);
          await sized.exec(id, "true");
        }));
      }));
      for (const id of forkIds) await sized.destroy(id);
      await fs.rm(forkImg, { recursive: true });
    }
  } finally {
    for (const raw of [plain, sized]) for (const id of await raw.list()) await raw.destroy(id);
    for (const v of await engine.listVms()) await engine.deleteVm(v.id, { wait: true }).catch(() => undefined);
    for (const s of await engine.listSnapshots()) await engine.deleteSnapshot(s.id).catch(() => undefined);
    await engine.close();
    await fs.rm(scratch, { recursive: true, force: true });
  }

  const summary = Object.fromEntries(Object.entries(cases).map(([name, c]) => {
    const capsule = c.capsule.length > 0 ? stats(c.capsule) : undefined;
    const raw = stats(c.raw);
    return [name, { capsule, raw, ratioP50: capsule ? capsule.p50 / raw.p50 : undefined, ...(c.skipped ? { skipped: c.skipped } : {}) }];
  }));
  const host = { cpus: os.cpus().length, loadAvg: os.loadavg().map((l) => Number(l.toFixed(2))), runsc: execFileSync("runsc", ["--version"], { encoding: "utf8" }).split("\n")[0] };
  if (asJson) {
    console.log(JSON.stringify({ host, samples: SAMPLES, rawFillMb: RAW_FILL_MB, sizes, summary, cases }, null, 2));
    return;
  }
  const f = (n: number | undefined) => (n !== undefined && Number.isFinite(n) ? n.toFixed(0) : "-");
  const mib = (b: number | undefined) => (b === undefined ? "-" : `${(b / 2 ** 20).toFixed(1)} MiB`);
  console.log(`ms, ${SAMPLES} samples each; ${host.runsc}; load ${host.loadAvg.join(" ")}; memory image: capsule ${mib(sizes.capsuleImageBytes)}, raw ${mib(sizes.rawImageBytes)}`);
  console.log(`${"".padEnd(24)} ${"capsule p50".padStart(12)} ${"p90".padStart(6)} ${"raw p50".padStart(9)} ${"p90".padStart(6)}  ratio`);
  for (const [name, s] of Object.entries(summary)) {
    const ratio = s.ratioP50 === undefined ? "" : `${s.ratioP50.toFixed(2)}x`;
    console.log(`${name.padEnd(24)} ${f(s.capsule?.p50).padStart(12)} ${f(s.capsule?.p90).padStart(6)} ${f(s.raw.p50).padStart(9)} ${f(s.raw.p90).padStart(6)}  ${ratio}${s.skipped ? `  (capsule skipped: ${s.skipped})` : ""}`);
  }
}

await main().catch((err: unknown) => {
  console.error(`memory-bench: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});

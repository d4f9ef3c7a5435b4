/**
 * Snapshot benchmark, the data dir on the host's filesystem and on a scratch XFS (reflink=1)
 * side by side in one run, interleaved sample by sample:
 *   node bench/dist/snapshot-bench.js [--samples N (5)] [--sizes 10,400] [--json]
 * Each sample: a VM writes N MB of random data and is snapshotted (timed, with the engine's
 * capture phases), then a VM created from that snapshot runs its first command (timed: create ->
 * `true`). Untimed checks: the booted VM holds the same file as the source (sha256), and a file
 * it changes is unchanged in the source and in a second VM booted from the snapshot.
 * The XFS filesystem is a loop image inside the run's scratch dir (so on the host's disk too),
 * mounted under that dir; it is unmounted and removed on every path, Ctrl-C included.
 * Env CAPSULE_AGENT_BUNDLE: the agent bundle dir (default <data>/agent). Needs root and a set-up
 * host (scripts/setup.sh).
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Engine } from "@capsule/engine";

const DATA = process.env.CAPSULE_DATA_DIR ?? "/var/lib/capsule";
const IMAGES = path.join(DATA, "images");
const AGENT = process.env.CAPSULE_AGENT_BUNDLE ?? path.join(DATA, "agent");
/** The scratch XFS image: room for a source VM's and a layer's copy of the largest size, twice. */
const XFS_IMAGE_BYTES = 8 * 2 ** 30;
const FILL = "/srv/fill";
const PROBE = "/srv/probe";

const argv = process.argv.slice(2);
const asJson = argv.includes("--json");
const arg = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const SAMPLES = Number(arg("--samples") ?? 5);
const SIZES_MB = (arg("--sizes") ?? "10,400").split(",").map(Number);
if (!Number.isInteger(SAMPLES) || SAMPLES < 1 || SIZES_MB.some((n) => !Number.isInteger(n) || n < 1)) {
  throw new Error("usage: snapshot-bench [--samples N] [--sizes MB,MB] [--json]");
}
const log = (msg: string) => void (asJson || console.error(msg));

interface Sample {
  snapshotMs: number;
  phases: Record<string, number>;
  createToFirstExecMs: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

async function exec(engine: Engine, id: string, command: string): Promise<string> {
  const r = await engine.guest.exec(id, { command });
  if (r.exitCode !== 0) throw new Error(`\`${command}\` exited ${r.exitCode}: ${r.stderr.trim().slice(0, 200)}`);
  return r.stdout;
}

/** One sample on one engine; every VM and the snapshot are deleted before it returns. */
async function sample(engine: Engine, mb: number): Promise<Sample> {
  const vms: string[] = [];
  let snapId: string | undefined;
  const create = async (snapshotId?: string) => {
    const id = (await engine.createVm(snapshotId === undefined ? {} : { snapshotId })).id;
    vms.push(id);
    return id;
  };
  try {
    const src = await create();
    await exec(engine, src, `head -c ${mb}M /dev/urandom > ${FILL} && echo source > ${PROBE}`);
    const sum = await exec(engine, src, `sha256sum ${FILL}`);
    const t0 = performance.now();
    snapId = (await engine.snapshotVm(src)).id;
    const snapshotMs = performance.now() - t0;
    const phases = engine.capturePhases(src) ?? {};

    const t1 = performance.now();
    const booted = await create(snapId);
    await exec(engine, booted, "true");
    const createToFirstExecMs = performance.now() - t1;

    if ((await exec(engine, booted, `sha256sum ${FILL}`)) !== sum) throw new Error(`${FILL} differs in a VM booted from the snapshot`);
    await exec(engine, booted, `echo changed > ${PROBE}`);
    const sibling = await create(snapId);
    for (const [id, who] of [[src, "the source"], [sibling, "a second VM from the snapshot"]] as const) {
      if ((await exec(engine, id, `cat ${PROBE}`)) !== "source\n") throw new Error(`a change in a VM booted from the snapshot reached ${who}`);
    }
    return { snapshotMs, phases, createToFirstExecMs };
  } finally {
    for (const id of vms) await engine.deleteVm(id, { wait: true });
    if (snapId !== undefined) await engine.deleteSnapshot(snapId);
  }
}

async function mountScratchXfs(image: string, dir: string): Promise<void> {
  const fh = await fs.open(image, "wx", 0o600);
  await fh.truncate(XFS_IMAGE_BYTES);
  await fh.close();
  execFileSync("mkfs.xfs", ["-q", "-m", "reflink=1", image]);
  await fs.mkdir(dir);
  execFileSync("mount", ["-o", "loop", image, dir]);
}

function unmount(dir: string): void {
  try {
    execFileSync("umount", [dir]);
  } catch {
    execFileSync("umount", ["-l", dir]);
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("snapshot-bench needs root (runsc, loop devices, mounts)");
  const scratch = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-snapshot-bench-"));
  const xfsDir = path.join(scratch, "xfs");
  const hostFs = execFileSync("findmnt", ["-n", "-o", "FSTYPE", "--target", scratch], { encoding: "utf8" }).trim();
  const engines: Array<{ fs: string; engine: Engine }> = [];
  let xfsMounted = false;
  const results: Record<string, Record<string, Sample[]>> = {};
  const stop = new AbortController();
  const onSignal = () => stop.abort(new Error("interrupted"));
  process.once("SIGINT", onSignal).once("SIGTERM", onSignal);
  try {
    await mountScratchXfs(path.join(scratch, "xfs.img"), xfsDir);
    xfsMounted = true;
    for (const [name, dataDir] of [[hostFs, path.join(scratch, "host", "data")], ["xfs-reflink", path.join(xfsDir, "data")]] as const) {
      engines.push({ fs: name, engine: await Engine.open({ dataDir, imagesDir: IMAGES, agentBundleDir: AGENT }) });
      results[name] = {};
    }
    // Page cache and the agent's first start, untimed.
    for (const { engine } of engines) await sample(engine, 1);
    for (const mb of SIZES_MB) {
      for (let i = 0; i < SAMPLES; i++) {
        for (const { fs: name, engine } of engines) {
          stop.signal.throwIfAborted();
          log(`${name}: ${mb} MB, sample ${i + 1} of ${SAMPLES}`);
          ((results[name]![`${mb}MB`] ??= [])).push(await sample(engine, mb));
        }
      }
    }
  } finally {
    for (const { engine } of engines) {
      for (const vm of await engine.listVms()) await engine.deleteVm(vm.id, { wait: true }).catch(() => undefined);
      for (const s of await engine.listSnapshots()) await engine.deleteSnapshot(s.id).catch(() => undefined);
      await engine.close();
    }
    if (xfsMounted) unmount(xfsDir);
    await fs.rm(scratch, { recursive: true, force: true });
  }

  const summary = Object.fromEntries(Object.entries(results).map(([name, bySize]) => [name, Object.fromEntries(Object.entries(bySize).map(([size, xs]) => {
    const phaseNames = [...new Set(xs.flatMap((x) => Object.keys(x.phases)))];
    return [size, {
      n: xs.length,
      snapshotMs: median(xs.map((x) => x.snapshotMs)),
      phasesMs: Object.fromEntries(phaseNames.map((p) => [p, median(xs.map((x) => x.phases[p] ?? NaN))])),
      createToFirstExecMs: median(xs.map((x) => x.createToFirstExecMs)),
    }];
  }))]));
  if (asJson) {
    console.log(JSON.stringify({ samples: SAMPLES, sizesMb: SIZES_MB, summary, results }, null, 2));
    return;
  }
  const f = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : "-");
  console.log(`medians of ${SAMPLES} (ms); phases overlap (resume runs beside flush), so they add up to more than the total`);
  for (const [name, bySize] of Object.entries(summary)) {
    for (const [size, s] of Object.entries(bySize)) {
      const ph = Object.entries(s.phasesMs).map(([k, v]) => `${k} ${f(v)}`).join(", ");
      console.log(`${name.padEnd(12)} ${size.padStart(6)}  snapshot ${f(s.snapshotMs).padStart(5)}  create from it -> first exec ${f(s.createToFirstExecMs).padStart(5)}   (${ph})`);
    }
  }
}

await main().catch((err: unknown) => {
  console.error(`snapshot-bench: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});

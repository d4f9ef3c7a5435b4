/**
 * What changes raw `runsc restore` → first `runsc exec true` (issue 15; docs/memory-snapshots-spike.md
 * Part 3). Raw sandboxes only (no engine, no agent): the agent bundle's Node holding a live buffer,
 * checkpointed once per workload, restored `--samples` times per variant, variants interleaved:
 *   node bench/dist/restore-lab.js [--samples N (5)] [--only name,name] [--json]
 * Variants: the image's size (Node holding 0, 10 or 100 MiB; 100 MiB of committed zero pages with
 * and without `--exclude-committed-zero-pages`), `--direct`, a restore into a sandbox made ahead by
 * `runsc create` (a warm restore target, running or frozen; its idle CPU and memory are measured
 * too), both cores kept busy by two host loops, and a fork of 3 (checkpoint + 3 restores at
 * once) with and without its targets made during the checkpoint. Needs root; leaves nothing
 * behind, Ctrl-C included.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { RawRunsc, imageBytes } from "./raw-runsc.js";

const argv = process.argv.slice(2);
const asJson = argv.includes("--json");
const arg = (name: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const SAMPLES = Number(arg("--samples") ?? 5);
const ONLY = arg("--only")?.split(",");
const DATA = process.env.CAPSULE_DATA_DIR ?? "/var/lib/capsule";
const ROOTFS = path.join(DATA, "images", "trixie", "rootfs");
const BUNDLE = path.join(DATA, "agent", "current");
/** How long a target made ahead sits before its restore (and over which its idle cost is read). */
const WARM_IDLE_MS = 1000;
const log = (msg: string) => void (asJson || console.error(msg));

interface Workload {
  fillMb: number;
  zeroMb: number;
}
interface Variant {
  name: string;
  workload: Workload;
  excludeZeroPages?: boolean;
  created?: boolean;
  /** The target made ahead waits frozen (cgroup v1 freezer, as warm VMs do); thawed inside the timing. */
  frozen?: boolean;
  direct?: boolean;
  busy?: boolean;
  /**
   * A fork: this many copies of a checkpoint taken in the timing (the source runs on), restored at
   * once, each answering `runsc exec true`; with `created`, their sandboxes are made while the
   * checkpoint runs, as an engine could once a fork is asked for.
   */
  copies?: number;
}
const W10 = { fillMb: 10, zeroMb: 0 };
const VARIANTS: Variant[] = [
  { name: "cold", workload: W10 },
  { name: "created-ahead", workload: W10, created: true },
  { name: "created-ahead-frozen", workload: W10, created: true, frozen: true },
  { name: "direct", workload: W10, direct: true },
  { name: "fill-0", workload: { fillMb: 0, zeroMb: 0 } },
  { name: "fill-100", workload: { fillMb: 100, zeroMb: 0 } },
  { name: "fill-100-created-ahead", workload: { fillMb: 100, zeroMb: 0 }, created: true },
  { name: "zero-100", workload: { fillMb: 10, zeroMb: 100 } },
  { name: "zero-100-excluded", workload: { fillMb: 10, zeroMb: 100 }, excludeZeroPages: true },
  { name: "cold-busy", workload: W10, busy: true },
  { name: "created-ahead-busy", workload: W10, created: true, busy: true },
  { name: "fork-3", workload: W10, copies: 3 },
  { name: "fork-3-created-during-checkpoint", workload: W10, copies: 3, created: true },
].filter((v) => !ONLY || ONLY.includes(v.name));

/** Node keeping `fillMb` MiB of non-zero pages and `zeroMb` MiB of committed zero pages live. */
const nodeArgs = ({ fillMb, zeroMb }: Workload) => [
  "/.capsule/lib/ld-linux-x86-64.so.2", "--library-path", "/.capsule/lib", "/.capsule/bin/node",
  "-e", `globalThis.keep = [Buffer.alloc(${fillMb} * 2 ** 20, 1), Buffer.alloc(${zeroMb} * 2 ** 20, 1).fill(0)]; setInterval(() => {}, 2 ** 30);`,
];
const key = (w: Workload) => `f${w.fillMb}z${w.zeroMb}`;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The CPU (ms per s) and memory (MiB) a sandbox's cgroup is charged while it idles for `ms`. */
async function setFreezer(id: string, state: "FROZEN" | "THAWED"): Promise<void> {
  const control = `/sys/fs/cgroup/freezer/${id}/freezer.state`;
  await fs.writeFile(control, state);
  while ((await fs.readFile(control, "utf8")).trim() !== state) await sleep(1);
}

async function idleCost(id: string, ms: number): Promise<{ cpuMsPerS: number; memMiB: number }> {
  const usage = async () => Number(await fs.readFile(`/sys/fs/cgroup/cpuacct/${id}/cpuacct.usage`, "utf8"));
  const before = await usage();
  await sleep(ms);
  const cpuMsPerS = (await usage()) - before;
  const mem = Number(await fs.readFile(`/sys/fs/cgroup/memory/${id}/memory.usage_in_bytes`, "utf8"));
  return { cpuMsPerS: cpuMsPerS / 1e6 / (ms / 1000), memMiB: mem / 2 ** 20 };
}

function busyLoops(): ChildProcess[] {
  return os.cpus().map(() => spawn("sh", ["-c", "while :; do :; done"], { stdio: "ignore" }));
}

interface Row {
  restoreMs: number[];
  toExecMs: number[];
  imageMiB?: number;
  idle?: Array<{ cpuMsPerS: number; memMiB: number }>;
}

/** One fork sample: `restoreMs` until every copy is restored, `toExecMs` until each answered. */
async function forkSample(raw: RawRunsc, source: string, img: string, id: string, v: Variant, row: Row): Promise<void> {
  const ids = Array.from({ length: v.copies! }, (_, k) => `${id}-${k}`);
  const t0 = performance.now();
  await Promise.all([raw.checkpoint(source, img), ...(v.created ? ids.map((c) => raw.create(c)) : [])]);
  const restored = ids.map((c) => raw.restore(c, img, { created: v.created }));
  await Promise.all(restored);
  row.restoreMs.push(performance.now() - t0);
  await Promise.all(ids.map((c) => raw.exec(c, "true")));
  row.toExecMs.push(performance.now() - t0);
  for (const c of ids) await raw.destroy(c);
  await fs.rm(img, { recursive: true });
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("restore-lab needs root (runsc)");
  const scratch = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-restore-lab-"));
  const tag = `rlab-${process.pid}`;
  const raws = new Map<string, RawRunsc>();
  const images = new Map<string, string>();
  const rows: Record<string, Row> = {};
  let loops: ChildProcess[] = [];
  const stop = new AbortController();
  const onSignal = () => stop.abort(new Error("interrupted"));
  process.once("SIGINT", onSignal).once("SIGTERM", onSignal);
  try {
    for (const v of VARIANTS) {
      const k = key(v.workload);
      if (!raws.has(k)) {
        const raw = new RawRunsc(path.join(scratch, k), ROOTFS, { args: nodeArgs(v.workload), binds: [{ destination: "/.capsule", source: BUNDLE }] });
        raws.set(k, raw);
        await raw.start(`${tag}-${k}`);
        await raw.exec(`${tag}-${k}`, "true"); // Node is up and its buffers are filled
        await sleep(500);
      }
      const imgKey = `${k}${v.excludeZeroPages ? "-x" : ""}`;
      if (!images.has(imgKey)) {
        const img = path.join(scratch, `img-${imgKey}`);
        await raws.get(k)!.checkpoint(`${tag}-${k}`, img, { excludeZeroPages: v.excludeZeroPages });
        images.set(imgKey, img);
      }
      rows[v.name] = { restoreMs: [], toExecMs: [], imageMiB: (await imageBytes(images.get(imgKey)!)) / 2 ** 20 };
    }
    for (let i = 0; i < SAMPLES; i++) {
      for (const v of VARIANTS) {
        stop.signal.throwIfAborted();
        log(`${v.name}: sample ${i + 1} of ${SAMPLES}`);
        const raw = raws.get(key(v.workload))!;
        const img = images.get(`${key(v.workload)}${v.excludeZeroPages ? "-x" : ""}`)!;
        const id = `${tag}-${v.name}-${i}`;
        const row = rows[v.name]!;
        if (v.copies) {
          await forkSample(raw, `${tag}-${key(v.workload)}`, path.join(scratch, `fork-${i}`), id, v, row);
          continue;
        }
        if (v.created) {
          await raw.create(id);
          if (v.frozen) await setFreezer(id, "FROZEN");
          (row.idle ??= []).push(await idleCost(id, WARM_IDLE_MS));
        }
        if (v.busy) loops = busyLoops();
        const t0 = performance.now();
        if (v.frozen) await setFreezer(id, "THAWED");
        await raw.restore(id, img, { created: v.created, direct: v.direct });
        row.restoreMs.push(performance.now() - t0);
        await raw.exec(id, "true");
        row.toExecMs.push(performance.now() - t0);
        for (const l of loops) l.kill("SIGKILL");
        loops = [];
        await raw.destroy(id);
      }
    }
  } finally {
    for (const l of loops) l.kill("SIGKILL");
    for (const raw of raws.values()) for (const id of await raw.list()) await raw.destroy(id);
    await fs.rm(scratch, { recursive: true, force: true });
  }
  const summary = Object.fromEntries(Object.entries(rows).map(([name, r]) => [name, {
    imageMiB: r.imageMiB,
    restoreMs: median(r.restoreMs),
    toFirstExecMs: median(r.toExecMs),
    ...(r.idle ? { warmTargetIdleCpuMsPerS: median(r.idle.map((x) => x.cpuMsPerS)), warmTargetMemMiB: median(r.idle.map((x) => x.memMiB)) } : {}),
  }]));
  if (asJson) {
    console.log(JSON.stringify({ samples: SAMPLES, loadAvg: os.loadavg(), summary, rows }, null, 2));
    return;
  }
  console.log(`medians of ${SAMPLES} (ms); load ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  for (const [name, s] of Object.entries(summary)) {
    const warm = "warmTargetIdleCpuMsPerS" in s ? `  (target made ahead idles at ${s.warmTargetIdleCpuMsPerS!.toFixed(1)} ms CPU/s, ${s.warmTargetMemMiB!.toFixed(0)} MiB)` : "";
    console.log(`${name.padEnd(34)} image ${s.imageMiB!.toFixed(1).padStart(6)} MiB  restore ${s.restoreMs.toFixed(0).padStart(4)}  -> first exec ${s.toFirstExecMs.toFixed(0).padStart(4)}${warm}`);
  }
}

await main().catch((err: unknown) => {
  console.error(`restore-lab: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});

/**
 * Time to interactive (TTI), by ComputeSDK's published method for hosted sandbox providers:
 *   npm run bench:tti                 (table)        npm run bench:tti -- --json
 * Each iteration creates a sandbox, runs an identity probe, then a second command; both must exit
 * 0. TTI runs from the create call to the second command's result; destroy is not timed. Every
 * boot id of the run must be distinct and no sandbox may find an earlier one's marker file.
 * Capsule is measured through the HTTP API with @capsule/sdk, against a server in this process;
 * raw gVisor (`runsc run --detach` of a plain bundle on the same image, two `runsc exec`) in the
 * same run, interleaved per iteration in sequential mode.
 * Options: --iterations N (20; sequential and staggered) --burst N (20) --stagger-ms N (200)
 *   --pace-ms N (0: pause between sequential iterations) --modes sequential,staggered,burst
 *   --wait-pool (sequential: wait for a full warm pool before each iteration; by default iterations
 *   follow each other as a user's loop would, the pool refilling behind them)
 *   --pool N (the server's warm pool: N VMs, 0 off; default: the server's own) --json
 * Mode `snapshot` (not ComputeSDK's): create from a snapshot booted before (so it has a warm VM,
 * waited for before each iteration) -> the first command's result, which must show the snapshot's
 * file; raw runsc's row is `runsc run` + one `runsc exec` of the base image, for reference.
 * Env CAPSULE_AGENT_BUNDLE: the agent bundle dir (default <data>/agent).
 * Needs root and a set-up host (scripts/setup.sh). Leaves nothing behind, also after a failure
 * or Ctrl-C.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Engine } from "@capsule/engine";
import { Capsule } from "@capsule/sdk";
import { KeyStore, dbPath, openDb, startServer, type RunningServer, type StartOptions } from "@capsule/server";
import { RawRunsc } from "./raw-runsc.js";
import { pssKiB, vmProcesses } from "./vm-procs.js";

const DATA = process.env.CAPSULE_DATA_DIR ?? "/var/lib/capsule";
const IMAGES = path.join(DATA, "images");
/** The guest agent bundle (env CAPSULE_AGENT_BUNDLE, as the tests and the other benches take it). */
const AGENT = process.env.CAPSULE_AGENT_BUNDLE ?? path.join(DATA, "agent");
const ROOTFS = path.join(IMAGES, "trixie", "rootfs");

const MARKER = "/tmp/.bench_ephemeral_check";
/** The probe's exit status when it finds an earlier sandbox's marker. */
const MARKER_FOUND_EXIT = 3;
/**
 * ComputeSDK's original command. Its newer `node -v` needs Node on the image's PATH, which the
 * base image does not have (Capsule's own Node is the agent's, under /.capsule).
 */
const SECOND_COMMAND = "echo benchmark";
const SECOND_OUTPUT = "benchmark";
/** ComputeSDK's bounds on one create and on one command. */
const CREATE_TIMEOUT_MS = 120_000;
const EXEC_TIMEOUT_MS = 30_000;
/** The share of samples dropped at each end before median, p95 and p99, as ComputeSDK does. */
const TRIM = 0.05;
const POOL_FILL_TIMEOUT_MS = 120_000;
const POOL_POLL_MS = 100;

/** ComputeSDK's published sequential TTI medians, for reference only: hosted, over the internet. */
const PUBLISHED = {
  date: "2026-05-05",
  source: "ComputeSDK sandbox benchmarks (computesdk.com/benchmarks), sequential mode, median TTI",
  medianMs: { declaw: 42, Daytona: 186, archil: 311, upstash: 386, E2B: 491, Vercel: 671, Modal: 1723 },
};

const MODES = ["sequential", "staggered", "burst", "snapshot"] as const;
type Mode = (typeof MODES)[number];
type TargetName = "capsule" | "raw";
const TARGET_LABEL: Record<TargetName, string> = { capsule: "Capsule", raw: "raw runsc" };

interface Options {
  iterations: number;
  burst: number;
  staggerMs: number;
  paceMs: number;
  /** Sequential: wait for a full warm pool before each iteration (a user's loop does not). */
  waitPool: boolean;
  /** Warm pool size for the server; undefined: the server's own default. */
  pool: number | undefined;
  modes: Mode[];
  json: boolean;
}

const USAGE = "usage: tti-bench [--iterations N] [--burst N] [--stagger-ms N] [--pace-ms N] [--wait-pool] [--modes sequential,staggered,burst] [--pool N] [--json]";

function parseArgs(argv: string[]): Options {
  const o: Options = { iterations: 20, burst: 20, staggerMs: 200, paceMs: 0, waitPool: false, pool: undefined, modes: [...MODES], json: false };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value\n${USAGE}`);
      return v;
    };
    const int = (min: number): number => {
      const v = value();
      const n = Number(v);
      if (!Number.isInteger(n) || n < min) throw new Error(`${flag} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
      return n;
    };
    if (flag === "--iterations") o.iterations = int(1);
    else if (flag === "--burst") o.burst = int(1);
    else if (flag === "--stagger-ms") o.staggerMs = int(0);
    else if (flag === "--pace-ms") o.paceMs = int(0);
    else if (flag === "--pool") o.pool = int(0);
    else if (flag === "--json") o.json = true;
    else if (flag === "--wait-pool") o.waitPool = true;
    else if (flag === "--modes") {
      const modes = value().split(",").map((m) => m.trim());
      for (const m of modes) if (!(MODES as readonly string[]).includes(m)) throw new Error(`unknown mode ${JSON.stringify(m)}; modes: ${MODES.join(", ")}`);
      o.modes = MODES.filter((m) => modes.includes(m));
    } else throw new Error(`unknown option ${JSON.stringify(flag)}\n${USAGE}`);
  }
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const warnings: string[] = [];
/** Progress goes to stderr, and not at all with --json; warnings and failures always. */
const log = (msg: string) => void (opts.json || console.error(msg));
const warn = (msg: string) => {
  warnings.push(msg);
  console.error(`warning: ${msg}`);
};
const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Ctrl-C (or SIGTERM) stops starting new sandboxes; the ones under way finish, then everything is cleaned up. */
const stop = new AbortController();
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (stop.signal.aborted) return console.error(`${sig}: clean-up is running; kill -9 ${process.pid} abandons it and leaves sandboxes behind`);
    console.error(`${sig}: stopping; sandboxes under way finish, then everything is cleaned up`);
    stop.abort(new Error(`interrupted by ${sig}`));
  });
}
const checkStop = () => stop.signal.throwIfAborted();

// ---------------------------------------------------------------- sandboxes

interface ExecOutcome {
  exitCode: number;
  stdout: string;
  stderr: string;
}
interface Sandbox {
  exec(command: string): Promise<ExecOutcome>;
  destroy(): Promise<void>;
}
interface Target {
  name: TargetName;
  create(): Promise<Sandbox>;
  /** Resolves once the teardowns of destroyed sandboxes are over. */
  settle(): Promise<void>;
}

function capsuleTarget(client: Capsule, server: RunningServer, snapshotId?: string): Target {
  return {
    name: "capsule",
    async create() {
      const { vm } = await client.vms.create({ idleTimeoutSeconds: null, ...(snapshotId === undefined ? {} : { snapshotId }) });
      return {
        async exec(command) {
          const r = await vm.exec({ command, timeoutMs: EXEC_TIMEOUT_MS });
          return { exitCode: r.statusCode ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
        },
        destroy: async () => void (await vm.delete()),
      };
    },
    // DELETE answers before the sandbox is torn down; the engine finishes it in the background.
    settle: () => server.engine.settled(),
  };
}

function rawTarget(raw: RawRunsc): Target {
  let next = 0;
  return {
    name: "raw",
    async create() {
      // runsc takes a unique prefix of an id for the id, and this one refuses an exact match
      // that is also a prefix ("tti-1-3" of "tti-1-30": ambiguous): the suffix keeps ids apart.
      const id = `tti-${process.pid}-${next++}-raw`;
      await raw.start(id);
      return {
        exec: (command) =>
          raw.exec(id, "/bin/sh", "-c", command).then(
            ({ stdout, stderr }) => ({ exitCode: 0, stdout, stderr }),
            (err: { code?: unknown; stdout?: string; stderr?: string }) => {
              if (typeof err.code !== "number") throw err; // runsc itself failed, not the command
              return { exitCode: err.code, stdout: err.stdout ?? "", stderr: err.stderr ?? "" };
            },
          ),
        destroy: () => raw.destroy(id),
      };
    },
    settle: async () => undefined, // runsc delete --force returns after the teardown
  };
}

/** The server's warm-pool gauges in `/metrics` (summed over label sets); undefined: no such gauge. */
async function poolGauges(url: string, key: string): Promise<{ ready?: number; target?: number; claims?: number; misses?: number }> {
  const res = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${key}` }, signal: stop.signal });
  if (!res.ok) throw new Error(`GET /metrics: ${res.status}`);
  const lines = (await res.text()).split("\n");
  const gauge = (name: string) => {
    const own = lines.filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
    return own.length === 0 ? undefined : own.reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
  };
  return { ready: gauge("capsule_pool_ready"), target: gauge("capsule_pool_target"), claims: gauge("capsule_pool_claims_total"), misses: gauge("capsule_pool_misses_total") };
}

/** How many warm VMs must be ready before a timing starts: --pool N, else the server's own target. */
async function poolFill(url: string, key: string): Promise<number> {
  if (opts.pool === 0) return 0;
  const { ready, target } = await poolGauges(url, key);
  if (opts.pool === undefined) return ready === undefined ? 0 : (target ?? 0);
  if (ready === undefined) {
    warn(`--pool ${opts.pool}: the server's /metrics has no capsule_pool_ready, so timing starts without waiting for the pool to fill (the server may not have a pool yet)`);
    return 0;
  }
  return opts.pool;
}

/**
 * Waits for `fill` warm VMs to be ready. Every timing, raw runsc's too, starts after it: a pool
 * refilling boots VMs on the same cores.
 */
async function waitForPool(url: string, key: string, fill: number): Promise<void> {
  if (fill === 0) return;
  const deadline = performance.now() + POOL_FILL_TIMEOUT_MS;
  for (;;) {
    const ready = (await poolGauges(url, key)).ready ?? 0;
    if (ready >= fill) return;
    if (performance.now() > deadline) throw new Error(`the warm pool is not full after ${POOL_FILL_TIMEOUT_MS / 1000} s (capsule_pool_ready ${ready} of ${fill})`);
    await sleep(POOL_POLL_MS, undefined, { signal: stop.signal });
  }
}

// ---------------------------------------------------------------- one iteration

/** Fails on an earlier sandbox's marker; prints the boot id and the namespaces; leaves its own marker. */
function identityProbe(label: string): string {
  // Shell builtins where they do (test, read, echo): a fork+exec costs ~14 ms inside gVisor, and
  // the probe's job is to identify the sandbox, not to time forks. One `ls` names the namespaces.
  return [
    `if [ -e ${MARKER} ]; then read -r m < ${MARKER}; echo "marker=$m"; exit ${MARKER_FOUND_EXIT}; fi`,
    "read -r boot_id < /proc/sys/kernel/random/boot_id || exit 1",
    'echo "boot_id=$boot_id"',
    "ls -l /proc/self/ns/ || exit 1",
    `echo ${label} > ${MARKER}`,
  ].join("\n");
}

interface Identity {
  bootId: string;
  namespaces: Record<string, string>;
}
function parseIdentity(stdout: string): Identity {
  const kv = new Map(stdout.split("\n").flatMap((l) => (l.includes("=") ? [[l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1).trim()] as const] : [])));
  const bootId = kv.get("boot_id");
  if (!bootId) throw new Error(`identity probe printed no boot id: ${JSON.stringify(stdout.slice(0, 200))}`);
  // `ls -l` lines: "lrwxrwxrwx 1 root root 0 ... ipc -> ipc:[4026531839]".
  const namespaces = Object.fromEntries(stdout.split("\n").flatMap((l) => {
    const m = / (\w+) -> (\S+)$/.exec(l);
    return m ? [[m[1] as string, m[2] as string]] : [];
  }));
  return { bootId, namespaces };
}

/** Boot ids seen in this run, with the sample that showed each first. */
const bootIds = new Map<string, string>();

interface Sample {
  label: string;
  ok: boolean;
  /** From the create call to the second command's result; null when the iteration failed before it. */
  ttiMs: number | null;
  /** The three timed steps of a successful sample: create, identity probe, second command. */
  stepsMs?: Steps;
  bootId?: string;
  namespaces?: Record<string, string>;
  error?: string;
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} took over ${ms / 1000} s`)), ms)));
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** One timed iteration. The sandbox comes back undestroyed (its destroy is not timed). */
async function attempt(target: Target, label: string): Promise<{ sample: Sample; sandbox?: Sandbox }> {
  const t0 = performance.now();
  let sandbox: Sandbox | undefined;
  try {
    // A create that times out may still finish later: the final sweep removes that sandbox.
    sandbox = await within(target.create(), CREATE_TIMEOUT_MS, "create");
    const t1 = performance.now();
    const probe = await within(sandbox.exec(identityProbe(label)), EXEC_TIMEOUT_MS, "identity probe");
    if (probe.exitCode === MARKER_FOUND_EXIT) throw new Error(`an earlier sandbox's marker is present (${probe.stdout.trim()})`);
    if (probe.exitCode !== 0) throw new Error(`identity probe exited ${probe.exitCode}: ${probe.stderr.trim().slice(0, 200)}`);
    const identity = parseIdentity(probe.stdout);
    const t2 = performance.now();
    const second = await within(sandbox.exec(SECOND_COMMAND), EXEC_TIMEOUT_MS, "second command");
    if (second.exitCode !== 0) throw new Error(`\`${SECOND_COMMAND}\` exited ${second.exitCode}: ${second.stderr.trim().slice(0, 200)}`);
    if (second.stdout.trim() !== SECOND_OUTPUT) throw new Error(`\`${SECOND_COMMAND}\` printed ${JSON.stringify(second.stdout.slice(0, 200))}`);
    const t3 = performance.now();
    const ttiMs = t3 - t0;
    const firstSeen = bootIds.get(identity.bootId);
    if (firstSeen === undefined) bootIds.set(identity.bootId, label);
    const sample: Sample = { label, ok: firstSeen === undefined, ttiMs, stepsMs: { create: t1 - t0, probe: t2 - t1, second: t3 - t2 }, bootId: identity.bootId, namespaces: identity.namespaces };
    if (firstSeen !== undefined) sample.error = `boot id ${identity.bootId} repeated (first seen in ${firstSeen})`;
    return { sample, sandbox };
  } catch (err) {
    return { sample: { label, ok: false, ttiMs: null, error: message(err) }, sandbox };
  }
}

/** The file a snapshot mode's sandboxes must find, and the command that shows it and the boot id. */
const SNAPSHOT_FILE = "/root/.tti-snapshot";
const FIRST_COMMAND = `read -r token < ${SNAPSHOT_FILE}; read -r boot_id < /proc/sys/kernel/random/boot_id; echo "token=$token"; echo "boot_id=$boot_id"`;

/** Snapshot mode: create -> one command (the snapshot's file and the boot id). `token`: what the file holds; undefined for raw runsc. */
async function attemptFirst(target: Target, label: string, token: string | undefined): Promise<{ sample: Sample; sandbox?: Sandbox }> {
  const t0 = performance.now();
  let sandbox: Sandbox | undefined;
  try {
    sandbox = await within(target.create(), CREATE_TIMEOUT_MS, "create");
    const t1 = performance.now();
    const first = await within(sandbox.exec(token === undefined ? "read -r boot_id < /proc/sys/kernel/random/boot_id; echo \"boot_id=$boot_id\"" : FIRST_COMMAND), EXEC_TIMEOUT_MS, "first command");
    const t2 = performance.now();
    if (first.exitCode !== 0) throw new Error(`the first command exited ${first.exitCode}: ${first.stderr.trim().slice(0, 200)}`);
    if (token !== undefined && !first.stdout.includes(`token=${token}\n`)) throw new Error(`the snapshot's file is not there: ${JSON.stringify(first.stdout.slice(0, 200))}`);
    const { bootId } = parseIdentity(first.stdout);
    const firstSeen = bootIds.get(bootId);
    if (firstSeen === undefined) bootIds.set(bootId, label);
    const sample: Sample = { label, ok: firstSeen === undefined, ttiMs: t2 - t0, stepsMs: { create: t1 - t0, probe: t2 - t1, second: NaN }, bootId };
    if (firstSeen !== undefined) sample.error = `boot id ${bootId} repeated (first seen in ${firstSeen})`;
    return { sample, sandbox };
  } catch (err) {
    return { sample: { label, ok: false, ttiMs: null, error: message(err) }, sandbox };
  }
}

async function destroy(sandbox: Sandbox | undefined, label: string): Promise<void> {
  await sandbox?.destroy().catch((err: unknown) => warn(`destroying ${label}: ${message(err)} (the final sweep retries)`));
}

function report(target: Target, mode: Mode, sample: Sample): void {
  if (!sample.ok) console.error(`  ${TARGET_LABEL[target.name]} ${mode} ${sample.label} failed: ${sample.error}`);
}

// ---------------------------------------------------------------- modes

type Samples = Record<TargetName, Sample[]>;
/** Resolves when the host is ready for the next timing (the warm pool full, when there is one). */
type Quiet = () => Promise<void>;

/**
 * One iteration after the other, Capsule and raw alternating within each (the first of the pair
 * alternates too, so neither always runs on the other's freshly warmed caches). Each sandbox is
 * destroyed and its teardown over before the next iteration; the next one starts at once (after
 * --pace-ms), the warm pool refilling behind it as it would behind a user's loop.
 */
async function sequential(targets: Target[], quiet: Quiet): Promise<Samples> {
  const out: Samples = { capsule: [], raw: [] };
  for (let i = 0; i < opts.iterations; i++) {
    for (const target of i % 2 === 0 ? targets : [...targets].reverse()) {
      checkStop();
      // A full pool at the start; between iterations only with --wait-pool.
      if (i === 0 || opts.waitPool) await quiet();
      const { sample, sandbox } = await attempt(target, `sequential-${target.name}-${i}`);
      report(target, "sequential", sample);
      out[target.name].push(sample);
      await destroy(sandbox, sample.label);
      await target.settle();
    }
    if (opts.paceMs > 0 && i < opts.iterations - 1) await sleep(opts.paceMs, undefined, { signal: stop.signal });
  }
  return out;
}

/**
 * Snapshot mode: a VM writes a file and is snapshotted; one untimed create from the snapshot makes
 * it hot (the pool keeps a warm VM of it); then each iteration waits for that warm VM and times a
 * create from the snapshot to its first command's result, raw runsc (run + one exec) interleaved.
 */
async function snapshotMode(client: Capsule, server: RunningServer, raw: Target, waitHot: () => Promise<void>): Promise<Samples> {
  const token = `tti-${process.pid}-${Date.now()}`;
  const { vm } = await client.vms.create({ idleTimeoutSeconds: null });
  let snapshotId: string | undefined;
  try {
    const w = await vm.exec({ command: `echo ${token} > ${SNAPSHOT_FILE}`, timeoutMs: EXEC_TIMEOUT_MS });
    if (w.statusCode !== 0) throw new Error(`writing the snapshot's file exited ${w.statusCode}`);
    snapshotId = (await vm.snapshot()).snapshotId;
  } finally {
    await vm.delete().catch((err: unknown) => warn(`deleting the snapshot's source VM: ${message(err)}`));
  }
  const target = capsuleTarget(client, server, snapshotId);
  const out: Samples = { capsule: [], raw: [] };
  try {
    for (let i = -1; i < opts.iterations; i++) {
      for (const t of i % 2 === 0 ? [target, raw] : [raw, target]) {
        checkStop();
        if (t === target && i >= 0) await waitHot();
        const { sample, sandbox } = await attemptFirst(t, `snapshot-${t.name}-${i < 0 ? "warmup" : i}`, t === target ? token : undefined);
        await destroy(sandbox, sample.label);
        await t.settle();
        if (i < 0) {
          if (!sample.ok) throw new Error(`snapshot mode's warm-up on ${TARGET_LABEL[t.name]} failed: ${sample.error}`);
          continue;
        }
        report(t, "snapshot", sample);
        out[t.name].push(sample);
      }
    }
  } finally {
    await client.snapshots.delete({ snapshotId }).catch((err: unknown) => warn(`deleting the bench's snapshot: ${message(err)}`));
  }
  return out;
}

/**
 * `count` sandboxes of one target, one launched every `intervalMs` from the wave's start (0: all at
 * once). They are destroyed after the wave's last result, so no teardown runs beside a timing.
 */
async function wave(target: Target, mode: Mode, count: number, intervalMs: number, quiet: Quiet): Promise<{ samples: Sample[]; wallMs: number }> {
  await quiet();
  const runs: Array<Promise<{ sample: Sample; sandbox?: Sandbox }>> = [];
  const t0 = performance.now();
  try {
    for (let i = 0; i < count; i++) {
      const wait = t0 + i * intervalMs - performance.now();
      if (wait > 0) await sleep(wait, undefined, { signal: stop.signal });
      runs.push(attempt(target, `${mode}-${target.name}-${i}`));
    }
    const results = await Promise.all(runs);
    const wallMs = performance.now() - t0;
    for (const r of results) report(target, mode, r.sample);
    return { samples: results.map((r) => r.sample), wallMs };
  } finally {
    // Also when interrupted: the sandboxes already launched finish, then go.
    const results = await Promise.all(runs);
    await Promise.all(results.map((r) => destroy(r.sandbox, r.sample.label)));
    await target.settle();
  }
}

// ---------------------------------------------------------------- statistics

interface Steps {
  create: number;
  probe: number;
  second: number;
}

interface Figures {
  n: number;
  ok: number;
  successRate: number;
  /** Median, p95 and p99 of the successful samples with the fastest and slowest 5% dropped. */
  medianMs: number;
  p95Ms: number;
  p99Ms: number;
  /** The slowest successful sample, untrimmed. */
  maxMs: number;
  /** Burst and staggered: from the first create call to the last result. */
  wallMs?: number;
  /** Each step's median over the successful samples (untrimmed): where the TTI goes. */
  stepMediansMs: Steps;
}

function figures(samples: Sample[], wallMs?: number): Figures {
  const ok = samples.flatMap((s) => (s.ok && s.ttiMs !== null ? [s.ttiMs] : [])).sort((a, b) => a - b);
  const cut = Math.floor(ok.length * TRIM);
  const kept = ok.slice(cut, ok.length - cut);
  const mid = Math.floor(kept.length / 2);
  const median = kept.length === 0 ? NaN : kept.length % 2 === 1 ? kept[mid]! : (kept[mid - 1]! + kept[mid]!) / 2;
  // Nearest rank: the smallest sample with at least p of the samples at or below it.
  const pct = (p: number) => (kept.length === 0 ? NaN : kept[Math.max(0, Math.ceil(p * kept.length) - 1)]!);
  return {
    n: samples.length,
    ok: ok.length,
    successRate: samples.length === 0 ? NaN : ok.length / samples.length,
    medianMs: median,
    p95Ms: pct(0.95),
    p99Ms: pct(0.99),
    maxMs: ok.length === 0 ? NaN : ok[ok.length - 1]!,
    stepMediansMs: stepMedians(samples),
    ...(wallMs === undefined ? {} : { wallMs }),
  };
}

function stepMedians(samples: Sample[]): Steps {
  const steps = samples.flatMap((s) => (s.ok && s.stepsMs ? [s.stepsMs] : []));
  const med = (xs: number[]) => {
    const v = [...xs].sort((a, b) => a - b);
    const mid = Math.floor(v.length / 2);
    return v.length === 0 ? NaN : v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  };
  return { create: med(steps.map((x) => x.create)), probe: med(steps.map((x) => x.probe)), second: med(steps.map((x) => x.second)) };
}

interface ModeResult {
  capsule: { figures: Figures; samples: Sample[] };
  raw: { figures: Figures; samples: Sample[] };
  /** Capsule's median over raw runsc's. */
  medianRatio: number;
  /** Capsule's creates in this mode that claimed a warm VM, and those that booted their own. */
  pool?: { warm: number; cold: number };
}

function modeResult(samples: Samples, wall?: Record<TargetName, number>): ModeResult {
  const capsule = figures(samples.capsule, wall?.capsule);
  const raw = figures(samples.raw, wall?.raw);
  return { capsule: { figures: capsule, samples: samples.capsule }, raw: { figures: raw, samples: samples.raw }, medianRatio: capsule.medianMs / raw.medianMs };
}

/** How many creates between two readings of /metrics claimed a warm VM, and how many booted. */
function poolDelta(a: { claims?: number; misses?: number }, b: { claims?: number; misses?: number }): Pick<ModeResult, "pool"> {
  if (a.claims === undefined || b.claims === undefined) return {};
  return { pool: { warm: b.claims - a.claims, cold: (b.misses ?? 0) - (a.misses ?? 0) } };
}

// ---------------------------------------------------------------- the pool's idle cost

/** How long the warm pool's idle VMs are watched for their CPU use. */
const IDLE_SAMPLE_MS = 5000;

interface PoolIdle {
  vms: number;
  /** Proportional set size of the pool VMs' runtime processes (sandbox, gofer, stubs), MiB. */
  pssMiB: number;
  /** CPU they used while idle, in cores (1 = one core busy all the time). */
  cpuCores: number;
}

/** The host processes of a sandbox: every process whose command line names the VM's id. */
function cpuTicks(pids: number[]): number {
  let t = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // fields from the 3rd (state) on
      t += Number(f[11]) + Number(f[12]); // utime, stime
    } catch {
      /* exited */
    }
  }
  return t;
}

async function poolIdleCost(server: RunningServer, ms: number): Promise<PoolIdle> {
  const ids = (await server.engine.listVms()).filter((v) => v.owner?.startsWith("pool:")).map((v) => v.id);
  const pids = vmProcesses(ids);
  const before = cpuTicks(pids);
  await sleep(ms, undefined, { signal: stop.signal });
  const ticks = cpuTicks(pids) - before;
  const pss = pssKiB(pids);
  const hz = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  return { vms: ids.length, pssMiB: pss / 1024, cpuCores: ticks / hz / (ms / 1000) };
}

// ---------------------------------------------------------------- set-up and clean-up

async function preflight(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("tti-bench needs root (runsc, network namespaces, loop devices)");
  for (const [what, p] of [["base image", ROOTFS], ["agent bundle", AGENT]] as const) {
    await fs.access(p).catch(() => {
      throw new Error(`no ${what} at ${p}: set the host up first (scripts/setup.sh)`);
    });
  }
}

/** The engine VMs the server left (a pool's included), torn down with a fresh engine on its data dir. */
async function sweepVms(dataDir: string): Promise<void> {
  const engine = await Engine.open({ dataDir, imagesDir: IMAGES, agentBundleDir: AGENT });
  try {
    for (const vm of await engine.listVms()) await engine.deleteVm(vm.id, { wait: true }).catch((err: unknown) => warn(`sweep: deleting VM ${vm.id}: ${message(err)}`));
  } finally {
    await engine.close();
  }
}

/** Removes the scratch dir unless something is still mounted under it (removing would reach into the mount). */
async function removeScratch(scratch: string): Promise<void> {
  const mounts = (await fs.readFile("/proc/self/mounts", "utf8")).split("\n").map((l) => l.split(" ")[1] ?? "");
  const left = mounts.filter((m) => m === scratch || m.startsWith(`${scratch}/`));
  if (left.length > 0) return warn(`left ${scratch} in place: still mounted under it: ${left.join(", ")}`);
  await fs.rm(scratch, { recursive: true, force: true });
}

// ---------------------------------------------------------------- output

/** What the table's Capsule rows ran with. */
function poolNote(fill: number): string {
  if (opts.pool === 0) return "warm pool: off (--pool 0)";
  const source = opts.pool === undefined ? "the server's default" : `--pool ${opts.pool}`;
  if (fill > 0) return `warm pool: ${fill} VMs (${source}), full at the start of each mode${opts.waitPool ? " and before each sequential iteration (--wait-pool)" : "; sequential iterations follow each other, the pool refilling behind them"}`;
  return opts.pool === undefined ? "warm pool: none (the server has none by default)" : `warm pool: ${source} asked for, not waited on (no capsule_pool_ready)`;
}

function printTable(modes: Partial<Record<Mode, ModeResult>>, pool: string): void {
  const f = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? "-" : n.toFixed(0));
  const cols = ["mode", "sandbox", "n", "success", "median", "p95", "p99", "max", "wall", "Capsule/raw"];
  const widths = [11, 10, 4, 8, 7, 7, 7, 7, 7, 11];
  const line = (cells: string[]) => console.log(cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  "));
  console.log(`TTI in ms: create -> identity probe -> \`${SECOND_COMMAND}\` result; median/p95/p99 drop the fastest and slowest ${TRIM * 100}%, max does not; Capsule ${pool}`);
  if (modes.snapshot) console.log(`snapshot row: create from a snapshot booted before -> its first command's result (raw runsc: run + one exec of the base image)`);
  line(cols);
  for (const mode of MODES) {
    const r = modes[mode];
    if (!r) continue;
    for (const name of ["capsule", "raw"] as const) {
      const x = r[name].figures;
      const wall = mode === "burst" ? f(x.wallMs) : "";
      const ratio = name === "capsule" && Number.isFinite(r.medianRatio) ? `${r.medianRatio.toFixed(2)}x` : "";
      line([name === "capsule" ? mode : "", TARGET_LABEL[name], String(x.n), `${(x.successRate * 100).toFixed(0)}%`, f(x.medianMs), f(x.p95Ms), f(x.p99Ms), f(x.maxMs), wall, ratio]);
    }
  }
  const claims = MODES.flatMap((m) => (modes[m]?.pool ? [`${m} ${modes[m]!.pool!.warm} warm, ${modes[m]!.pool!.cold} booted`] : []));
  if (claims.length > 0) console.log(`Capsule creates that claimed a warm VM: ${claims.join("; ")}`);
  console.log("\nmedian per step (ms, untrimmed): create / identity probe / second command");
  for (const mode of MODES) {
    const r = modes[mode];
    if (!r) continue;
    for (const name of ["capsule", "raw"] as const) {
      const m = r[name].figures.stepMediansMs;
      console.log(`  ${mode.padEnd(11)} ${TARGET_LABEL[name].padEnd(10)} ${f(m.create)} / ${f(m.probe)} / ${f(m.second)}`);
    }
  }
  const published = Object.entries(PUBLISHED.medianMs).map(([p, ms]) => `${p} ${ms}`).join(", ");
  console.log(`\nFor reference, ${PUBLISHED.source}, published ${PUBLISHED.date} (ms): ${published}.`);
  console.log(`Those are hosted providers reached over the internet; the rows above are this ${os.cpus().length}-core host over loopback.`);
  for (const mode of MODES) {
    for (const name of ["capsule", "raw"] as const) {
      const failed = modes[mode]?.[name].samples.filter((s) => !s.ok) ?? [];
      const reasons = [...new Set(failed.map((s) => s.error))];
      if (failed.length > 0) console.log(`${mode} ${TARGET_LABEL[name]}: ${failed.length} failed: ${reasons.slice(0, 3).join("; ")}${reasons.length > 3 ? "; ..." : ""}`);
    }
  }
  for (const w of warnings) console.log(`warning: ${w}`);
}

// ---------------------------------------------------------------- main

/** The server's default CPU overcommit (packages/server/src/quotas.ts). */
const DEFAULT_CPU_OVERCOMMIT = 16;

/** A host CPU overcommit with room for the largest wave's VMs plus a full pool of one-vCPU VMs. */
function cpuOvercommit(): number {
  const vms = Math.max(opts.burst, opts.iterations) + (opts.pool ?? 0);
  return Math.max(DEFAULT_CPU_OVERCOMMIT, Math.ceil(vms / os.cpus().length));
}

async function main(): Promise<void> {
  await preflight();
  const scratch = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-tti-bench-"));
  const dataDir = path.join(scratch, "data");
  const raw = new RawRunsc(path.join(scratch, "raw"), ROOTFS);
  const modes: Partial<Record<Mode, ModeResult>> = {};
  let server: RunningServer | undefined;
  let fill = 0;
  let poolIdle: PoolIdle | undefined;
  try {
    await fs.mkdir(dataDir, { recursive: true });
    const db = openDb(dbPath(dataDir));
    const { key } = new KeyStore(db).createKey("tti-bench");
    db.close();
    const serverOpts: StartOptions = {
      dataDir,
      imagesDir: IMAGES,
      agentBundleDir: AGENT,
      port: 0,
      host: "127.0.0.1",
      egress: "none",
      logLevel: "warn",
      // One account holds a whole burst here. gVisor reserves no memory for a VM's limit, so the
      // host's capacity is counted with a memory overcommit of 8 (2 by default), room for a burst
      // of 50 default VMs on a 24 GiB host. The CPU overcommit (16 by default: 32 one-vCPU VMs on
      // 2 cores) grows to hold the burst's VMs and a full pool refilling behind them.
      quotas: { vms: null, runningVms: null, concurrentExecs: null },
      admission: { memoryOvercommit: 8, cpuOvercommit: cpuOvercommit() },
      // --pool N: N warm VMs, bounded by the host's admission only (not the pool's memory budget).
      ...(opts.pool === undefined ? {} : { pool: opts.pool > 0 ? { size: opts.pool, maxMemoryMb: 1 << 30, bootConcurrency: 2 } : { size: 0, hotSize: 0 } }),
    };
    server = await startServer(serverOpts);
    const url = server.url;
    fill = await poolFill(url, key);
    const quiet = () => waitForPool(url, key, fill);
    const capsule = new Capsule({ apiUrl: url, apiKey: key });
    const targets = [capsuleTarget(capsule, server), rawTarget(raw)];

    log("warm-up: one untimed iteration each (page cache, the server's first requests)");
    for (const target of targets) {
      await quiet();
      const { sample, sandbox } = await attempt(target, `warmup-${target.name}`);
      await destroy(sandbox, sample.label);
      await target.settle();
      if (!sample.ok) throw new Error(`warm-up on ${TARGET_LABEL[target.name]} failed: ${sample.error}`);
    }

    if (fill > 0) {
      await quiet();
      log(`the warm pool's idle cost: ${fill} VMs, ${IDLE_SAMPLE_MS / 1000} s`);
      poolIdle = await poolIdleCost(server, IDLE_SAMPLE_MS);
    }

    for (const mode of opts.modes) {
      checkStop();
      if (mode === "sequential") {
        log(`sequential: ${opts.iterations} iterations, Capsule and raw runsc interleaved${opts.paceMs ? `, ${opts.paceMs} ms apart` : ""}`);
        const before = await poolGauges(url, key);
        modes.sequential = { ...modeResult(await sequential(targets, quiet)), ...poolDelta(before, await poolGauges(url, key)) };
        continue;
      }
      if (mode === "snapshot") {
        log(`snapshot: ${opts.iterations} creates from a snapshot booted before, each after its warm VM is ready, raw runsc interleaved`);
        const before = await poolGauges(url, key);
        // The default kind's warm VMs plus the snapshot's one (hotSize 1 unless configured).
        const waitHot = () => waitForPool(url, key, fill > 0 ? fill + 1 : 0);
        modes.snapshot = { ...modeResult(await snapshotMode(capsule, server, targets[1]!, waitHot)), ...poolDelta(before, await poolGauges(url, key)) };
        continue;
      }
      const [count, interval]: [number, number] = mode === "staggered" ? [opts.iterations, opts.staggerMs] : [opts.burst, 0];
      const samples: Samples = { capsule: [], raw: [] };
      const wall = { capsule: NaN, raw: NaN };
      let pool: Pick<ModeResult, "pool"> = {};
      for (const target of targets) {
        log(`${mode}: ${count} ${TARGET_LABEL[target.name]} sandboxes${interval ? `, one every ${interval} ms` : " at once"}`);
        const before = target.name === "capsule" ? await poolGauges(url, key) : undefined;
        const w = await wave(target, mode, count, interval, quiet);
        if (before) pool = poolDelta(before, await poolGauges(url, key));
        samples[target.name] = w.samples;
        wall[target.name] = w.wallMs;
      }
      modes[mode] = { ...modeResult(samples, wall), ...pool };
    }
  } finally {
    log("clean-up: VMs, raw sandboxes, scratch dir");
    await server?.close().catch((err: unknown) => warn(`closing the server: ${message(err)}`));
    await sweepVms(dataDir).catch((err: unknown) => warn(`sweeping VMs: ${message(err)}`));
    for (const id of await raw.list()) await raw.destroy(id);
    const rawLeft = await raw.list();
    if (rawLeft.length > 0) warn(`raw sandboxes still listed after delete: ${rawLeft.join(", ")}`);
    await removeScratch(scratch);
  }

  const failed = Object.values(modes).some((r) => r.capsule.figures.ok < r.capsule.figures.n || r.raw.figures.ok < r.raw.figures.n);
  if (opts.json) {
    const host = { cpus: os.cpus().length, memGiB: Math.round(os.totalmem() / 2 ** 30), kernel: os.release(), runsc: execFileSync("runsc", ["--version"], { encoding: "utf8" }).split("\n")[0] };
    const method = { tti: `create call -> identity probe -> \`${SECOND_COMMAND}\` result`, trim: TRIM, percentile: "nearest rank", createTimeoutMs: CREATE_TIMEOUT_MS, execTimeoutMs: EXEC_TIMEOUT_MS, marker: MARKER };
    const pool = { option: opts.pool ?? "server default", readyBeforeTiming: fill, note: poolNote(fill), idle: poolIdle };
    console.log(JSON.stringify({ method, options: opts, pool, host, modes, published: PUBLISHED, warnings }, null, 2));
  } else {
    printTable(modes, poolNote(fill));
    if (poolIdle) console.log(`warm pool idle cost: ${poolIdle.vms} VMs, PSS ${poolIdle.pssMiB.toFixed(1)} MiB in all (${(poolIdle.pssMiB / poolIdle.vms).toFixed(1)} per VM), CPU ${(poolIdle.cpuCores * 100).toFixed(1)}% of a core in all (${((poolIdle.cpuCores / poolIdle.vms) * 100).toFixed(1)}% per VM)`);
  }
  if (failed) process.exitCode = 1;
}

await main().catch((err: unknown) => {
  // An interrupted sleep or fetch rejects with a bare AbortError; the signal says why.
  console.error(`tti-bench: ${stop.signal.aborted ? `${message(stop.signal.reason)}; clean-up done, no results` : message(err)}`);
  process.exitCode = 1;
});

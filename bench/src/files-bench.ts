/**
 * File throughput each way, hop by hop, side by side with other ways of moving the same bytes
 * into and out of a gVisor VM:
 *   node bench/dist/files-bench.js          (human table)
 *   node bench/dist/files-bench.js --json   (as JSON)
 * Options: --samples N (default 5; the first transfer into a fresh VM is also shown on its own,
 * since gVisor serves every page the sandbox touches for the first time); --sizes 1,10,100 (file
 * sizes in MB, default 100; a sample of a file under 100 MB moves it back to back until 100 MB
 * have gone, so per-transfer latency counts and one timer tick does not).
 * Rows: the engine (`guest.writeFile` / `readFileStream`), the HTTP API through the SDK
 * (`vm.fs.writeFile` / `createReadStream`, the `files-raw` routes; the server in this process),
 * and floors: `runsc exec … cat` fed from / read by the host, `dd` inside the VM (page cache,
 * write with fsync). Wall-clock MB/s; CPU of this process and of the sandbox's cgroup per run.
 * Needs root and a set-up host (scripts/setup.sh). Leaves nothing behind.
 * @module
 */
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { Engine } from "@capsule/engine";
import { Capsule } from "@capsule/sdk";
import { KeyStore, dbPath, openDb, startServer } from "@capsule/server";

const argv = process.argv.slice(2);
const asJson = argv.includes("--json");
const samplesAt = argv.indexOf("--samples");
const SAMPLES = samplesAt >= 0 ? Number(argv[samplesAt + 1]) : 5;
const DATA = process.env.CAPSULE_DATA_DIR ?? "/var/lib/capsule";
const IMAGES = path.join(DATA, "images");
const AGENT = process.env.CAPSULE_AGENT_BUNDLE ?? path.join(DATA, "agent");
const sizesAt = argv.indexOf("--sizes");
const SIZES_MB = (sizesAt >= 0 ? (argv[sizesAt + 1] ?? "") : "100").split(",").map(Number);
if (SIZES_MB.some((mb) => !Number.isInteger(mb) || mb < 1)) throw new Error("--sizes takes whole MB counts, e.g. 1,10,100");
/** Bytes a sample moves at least (a small file is moved several times). */
const SAMPLE_MB = 100;
const CHUNK = crypto.randomBytes(2 ** 20);

interface Run {
  mbps: number;
  hostCpuMs: number;
  sandboxCpuMs: number;
}
const log = (...a: unknown[]) => {
  if (!asJson) console.error(...a);
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const source = (mb: number) => Readable.from((function* () { for (let i = 0; i < mb; i++) yield CHUNK; })());

/** CPU time (ms) the sandbox's cgroup has used (runsc names it after the VM id; cgroup v1 here). */
function sandboxCpuMs(id: string): number {
  try {
    return Number(fs.readFileSync(`/sys/fs/cgroup/cpuacct/${id}/cpuacct.usage`, "utf8")) / 1e6;
  } catch {
    return NaN;
  }
}

/** Runs `fn` (one transfer of `mb` MB) `reps` times back to back; CPU figures are per transfer. */
async function measure(id: string, mb: number, fn: () => Promise<unknown>, reps = 1): Promise<Run> {
  const cpu0 = process.cpuUsage();
  const box0 = sandboxCpuMs(id);
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await fn();
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { mbps: (mb * reps) / (ms / 1000), hostCpuMs: (cpu.user + cpu.system) / 1000 / reps, sandboxCpuMs: (sandboxCpuMs(id) - box0) / reps };
}

async function drain(stream: AsyncIterable<unknown>, mb: number): Promise<void> {
  let n = 0;
  for await (const c of stream) n += (c as Buffer).length;
  if (n !== mb * 2 ** 20) throw new Error(`read ${n} bytes, wanted ${mb * 2 ** 20}`);
}

/** Runs `runsc exec` in the VM with the host end of its stdio as given; rejects on a non-zero exit. */
function runscExec(root: string, id: string, argv: string[], stdin: "ignore" | number, onStdout?: (b: Buffer) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn("runsc", [`--root=${root}`, "exec", id, ...argv], { stdio: [stdin, onStdout ? "pipe" : "ignore", "inherit"] });
    if (onStdout) c.stdout?.on("data", onStdout);
    c.on("error", reject);
    c.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`runsc exec ${argv.join(" ")}: exit ${code}`))));
  });
}

async function main(): Promise<void> {
  const scratch = await fsp.mkdtemp(path.join(os.tmpdir(), "capsule-files-bench-"));
  const rows: Record<string, Record<string, Run[]>> = {};
  const add = (size: string, row: string, run: Run) => {
    ((rows[size] ??= {})[row] ??= []).push(run);
    log(`${size} ${row}: ${run.mbps.toFixed(0)} MB/s`);
  };
  const engine = await Engine.open({ dataDir: path.join(scratch, "engine"), imagesDir: IMAGES, agentBundleDir: AGENT });
  const apiDir = path.join(scratch, "api");
  await fsp.mkdir(apiDir);
  const db = openDb(dbPath(apiDir));
  const { key } = new KeyStore(db).createKey("bench");
  db.close();
  const server = await startServer({ dataDir: apiDir, imagesDir: IMAGES, agentBundleDir: AGENT, port: 0, host: "127.0.0.1", egress: "none", logLevel: "warn", pool: { size: 0, hotSize: 0 } });
  try {
    const { id } = await engine.createVm();
    await engine.guest.exec(id, { command: "true" });
    const { vm } = await new Capsule({ apiUrl: server.url, apiKey: key }).vms.create({ idleTimeoutSeconds: null });
    const apiId = vm.vmId;
    const root = path.join(scratch, "engine", "runtime", "runsc");
    for (const mb of SIZES_MB) {
      const reps = Math.max(1, Math.ceil(SAMPLE_MB / mb));
      const at = `${mb} MB`;
      // The first transfer of each kind into its fresh VM is a row of its own (one transfer).
      for (let i = 0; i < SAMPLES; i++) {
        const isFirst = i === 0 && mb === SIZES_MB[0];
        const row = (name: string) => (isFirst ? `${name} (first)` : name);
        const n = isFirst ? 1 : reps;
        add(at, row("engine write"), await measure(id, mb, () => engine.guest.writeFile(id, "/srv/big", source(mb)), n));
        add(at, row("engine read"), await measure(id, mb, async () => drain((await engine.guest.readFileStream(id, "/srv/big")).stream, mb), n));
        add(at, row("API write"), await measure(apiId, mb, () => vm.fs.writeFile("/srv/big", source(mb)), n));
        add(at, row("API read"), await measure(apiId, mb, async () => drain(await vm.fs.createReadStream("/srv/big"), mb), n));
      }
      const file = path.join(scratch, "src.bin");
      await fsp.writeFile(file, Buffer.concat(Array.from({ length: mb }, () => CHUNK)));
      for (let i = 0; i < SAMPLES; i++) {
        add(at, "floor: runsc exec cat > file", await measure(id, mb, async () => {
          const fd = fs.openSync(file, "r");
          await runscExec(root, id, ["sh", "-c", "cat > /srv/x"], fd).finally(() => fs.closeSync(fd));
        }, reps));
        add(at, "floor: runsc exec cat file", await measure(id, mb, async () => {
          let n = 0;
          await runscExec(root, id, ["cat", "/srv/x"], "ignore", (b) => (n += b.length));
          if (n !== mb * 2 ** 20) throw new Error(`runsc exec cat gave ${n} bytes`);
        }, reps));
        add(at, "floor: dd in the VM, write + fsync", await measure(id, mb, () => engine.guest.exec(id, { command: `dd if=/dev/zero of=/srv/dd bs=1M count=${mb} conv=fsync 2>/dev/null` }), reps));
        add(at, "floor: dd in the VM, read", await measure(id, mb, () => engine.guest.exec(id, { command: "dd if=/srv/dd of=/dev/null bs=1M 2>/dev/null" }), reps));
      }
    }
  } finally {
    await server.close();
    const left = await Engine.open({ dataDir: apiDir, imagesDir: IMAGES, agentBundleDir: AGENT });
    for (const v of await left.listVms()) await left.deleteVm(v.id, { wait: true });
    await left.close();
    for (const v of await engine.listVms()) await engine.deleteVm(v.id, { wait: true });
    await engine.close();
    await fsp.rm(scratch, { recursive: true, force: true });
  }
  const summarize = (runs: Run[]) => ({ n: runs.length, mbps: median(runs.map((r) => r.mbps)), hostCpuMs: median(runs.map((r) => r.hostCpuMs)), sandboxCpuMs: median(runs.map((r) => r.sandboxCpuMs)) });
  const summary = Object.fromEntries(Object.entries(rows).map(([size, byRow]) => [size, Object.fromEntries(Object.entries(byRow).map(([row, runs]) => [row, summarize(runs)]))]));
  if (asJson) {
    console.log(JSON.stringify({ sizesMB: SIZES_MB, samples: SAMPLES, sampleMB: SAMPLE_MB, rows: summary }, null, 2));
    return;
  }
  console.log(`medians of ${SAMPLES} samples (first transfers: 1 run; a sample moves >= ${SAMPLE_MB} MB)   MB/s   host CPU ms   sandbox CPU ms (per transfer)`);
  for (const [size, byRow] of Object.entries(summary)) {
    for (const [row, s] of Object.entries(byRow)) console.log(`${size.padStart(6)} ${row.padEnd(40)} ${s.mbps.toFixed(0).padStart(8)} ${s.hostCpuMs.toFixed(0).padStart(12)} ${s.sandboxCpuMs.toFixed(0).padStart(15)}`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

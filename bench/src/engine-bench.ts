/**
 * Engine and API benchmark, side by side with the raw runtime in the same run:
 *   npm run bench            (human table)
 *   npm run bench -- --json  (summary as JSON)
 * Options: --samples N (default 10 creates, 10x that for exec), --idle-vms N (default 20).
 * Needs root and a set-up host (scripts/setup.sh). Leaves nothing behind.
 */
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { Engine } from "@capsule/engine";
import { KeyStore, dbPath, openDb, startServer } from "@capsule/server";
import { benchArgs, quantile, time } from "./measure.js";
import { RawRunsc } from "./raw-runsc.js";
import { pssKiB, vmProcesses } from "./vm-procs.js";

const { asJson, num } = benchArgs();
const SAMPLES = num("--samples", 10);
const IDLE_VMS = num("--idle-vms", 20);
const DATA = process.env.CAPSULE_DATA_DIR ?? "/var/lib/capsule";
const IMAGES = path.join(DATA, "images");
const AGENT = path.join(DATA, "agent");

interface Stat {
  n: number;
  p50: number;
  p95: number;
  mean: number;
}
function stats(xs: number[]): Stat {
  return { n: xs.length, p50: quantile(xs, 0.5), p95: quantile(xs, 0.95), mean: xs.reduce((a, b) => a + b, 0) / xs.length };
}
const log = (...a: unknown[]) => {
  if (!asJson) console.error(...a);
};

/**
 * The same operations through the HTTP API (the server in this process, on its own data dir),
 * as the official client sends them: `POST /v1/vms` then `POST /v1/vms/{id}/exec-await`.
 */
async function apiFigures(dataDir: string): Promise<Record<string, Stat>> {
  await fs.mkdir(dataDir, { recursive: true });
  const db = openDb(dbPath(dataDir));
  const { key } = new KeyStore(db).createKey("bench");
  db.close();
  // Warnings only: the server logs to stdout, where --json prints the summary.
  const server = await startServer({ dataDir, imagesDir: IMAGES, agentBundleDir: AGENT, port: 0, host: "127.0.0.1", egress: "none", logLevel: "warn" });
  const call = async (method: string, route: string, body?: unknown) => {
    const res = await fetch(`${server.url}${route}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${await res.text()}`);
    return (await res.json()) as Record<string, unknown>;
  };
  const exec = (id: string) => call("POST", `/v1/vms/${id}/exec-await`, { command: "true", terminal: null, timeoutMs: null });
  const ids: string[] = [];
  try {
    log(`through the API: create -> first exec (${SAMPLES}), exec-await \`true\` (${SAMPLES * 10})`);
    const create: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      let id = "";
      create.push(
        await time(async () => {
          id = String((await call("POST", "/v1/vms", { idleTimeoutSeconds: null })).id);
          await exec(id);
        }),
      );
      if (i === 0) {
        ids.push(id); // kept for the exec samples
        continue;
      }
      await call("DELETE", `/v1/vms/${id}`);
      await new Promise((r) => setTimeout(r, 2500)); // the teardown runs on in the server: let it end
    }
    const execs: number[] = [];
    for (let i = 0; i < SAMPLES * 10; i++) execs.push(await time(() => exec(ids[0]!)));
    return { createToFirstExecMs: stats(create), execAwaitTrueMs: stats(execs) };
  } finally {
    for (const id of ids) await call("DELETE", `/v1/vms/${id}`).catch(() => undefined);
    await server.close();
    // A server with a warm pool leaves its warm VMs running past close (the next start adopts
    // them): remove them, so they neither run beside later samples nor hold mounts in scratch.
    const left = await Engine.open({ dataDir, imagesDir: IMAGES, agentBundleDir: AGENT });
    for (const vm of await left.listVms()) await left.deleteVm(vm.id, { wait: true });
    await left.close();
  }
}

/** rss + mapped_file of the sandbox's memory cgroup (cgroup v1, as runsc sets it up here). */
function cgroupRssMiB(id: string): number | undefined {
  try {
    const txt = execFileSync("cat", [`/sys/fs/cgroup/memory/${id}/memory.stat`], { encoding: "utf8" });
    const get = (k: string) => Number(new RegExp(`^total_${k} (\\d+)`, "m").exec(txt)?.[1] ?? 0);
    return (get("rss") + get("mapped_file") + get("shmem")) / 2 ** 20;
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  const scratch = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-bench-"));
  const engine = await Engine.open({ dataDir: path.join(scratch, "data"), imagesDir: IMAGES, agentBundleDir: AGENT });
  const raw = new RawRunsc(path.join(scratch, "raw"), path.join(IMAGES, "trixie", "rootfs"));
  const rawIds: string[] = [];
  const out: Record<string, unknown> = { host: { cpus: os.cpus().length, memGiB: Math.round(os.totalmem() / 2 ** 30), runsc: execFileSync("runsc", ["--version"], { encoding: "utf8" }).split("\n")[0] } };
  try {
    // Warm the page cache for both paths.
    const warm = await engine.createVm();
    await engine.guest.exec(warm.id, { command: "true" });

    // Every sample cleans up after itself (VMs deleted and settled, raw sandboxes destroyed), so
    // later samples do not run beside a growing crowd of idle sandboxes; raw samples are taken
    // interleaved with both create loops, so each ratio compares like with like.
    const rawKeep = `bench-raw-${process.pid}-exec`;
    rawIds.push(rawKeep);
    await raw.start(rawKeep);
    const rawCreateSample = async (tag: string): Promise<number> => {
      const id = `bench-raw-${process.pid}-${tag}`;
      rawIds.push(id);
      const ms = await time(async () => {
        await raw.start(id);
        await raw.exec(id, "true");
      });
      await raw.destroy(id);
      return ms;
    };
    const phases: Record<string, number[]> = {};
    const delMs: number[] = [];
    const capsuleCreateSample = async (opts: { snapshotId?: string }): Promise<number> => {
      let id = "";
      const ms = await time(async () => {
        id = (await engine.createVm(opts)).id;
        await engine.guest.exec(id, { command: "true" });
      });
      for (const [k, v] of Object.entries(engine.bootPhases(id) ?? {})) (phases[`${opts.snapshotId ? "fromSnapshot." : ""}${k}`] ??= []).push(v);
      delMs.push(await time(() => engine.deleteVm(id)));
      await engine.settled();
      return ms;
    };

    log(`create -> first exec result (${SAMPLES} samples each)`);
    const capsuleCreate: number[] = [];
    const rawCreate: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      capsuleCreate.push(await capsuleCreateSample({}));
      rawCreate.push(await rawCreateSample(`c${i}`));
    }
    out.createToFirstExecMs = { capsule: stats(capsuleCreate), rawRunsc: stats(rawCreate), ratioP50: stats(capsuleCreate).p50 / stats(rawCreate).p50 };

    log(`exec round trip of \`true\` (${SAMPLES * 10} samples each)`);
    const capsuleExec: number[] = [];
    const rawExec: number[] = [];
    for (let i = 0; i < SAMPLES * 10; i++) {
      capsuleExec.push(await time(() => engine.guest.exec(warm.id, { command: "true" })));
      rawExec.push(await time(() => raw.exec(rawKeep, "true")));
    }
    out.execTrueMs = { capsule: stats(capsuleExec), rawRunscExec: stats(rawExec), ratioP50: stats(capsuleExec).p50 / stats(rawExec).p50 };

    log("snapshot, and create from snapshot");
    const snapMs: Record<string, number> = {};
    const snapPhases: Record<string, Record<string, number>> = {};
    let snapId = "";
    for (const mb of [10, 400]) {
      const vm = await engine.createVm();
      await engine.guest.exec(vm.id, { command: `head -c ${mb}M /dev/urandom > /srv/fill` });
      const t0 = performance.now();
      const s = await engine.snapshotVm(vm.id);
      snapMs[`${mb}MB`] = performance.now() - t0;
      snapPhases[`${mb}MB`] = engine.capturePhases(vm.id) ?? {};
      if (mb === 10) snapId = s.id;
      await engine.deleteVm(vm.id, { wait: true });
    }
    out.snapshotMs = snapMs;
    out.snapshotPhasesMs = snapPhases;
    const fromSnap: number[] = [];
    const rawCreate2: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      fromSnap.push(await capsuleCreateSample({ snapshotId: snapId }));
      rawCreate2.push(await rawCreateSample(`s${i}`));
    }
    out.createFromSnapshotToFirstExecMs = { capsule: stats(fromSnap), rawRunsc: stats(rawCreate2), ratioP50: stats(fromSnap).p50 / stats(rawCreate2).p50 };
    out.createPhasesP50Ms = Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, stats(v).p50]));
    out.deleteReturnsMs = stats(delMs);

    log("file write/read of 100 MB");
    const size = 100 * 1024 * 1024;
    const chunk = crypto.randomBytes(1024 * 1024);
    const writeMs = await time(() =>
      engine.guest.writeFile(warm.id, "/srv/big", Readable.from((function* () {
        for (let i = 0; i < 100; i++) yield chunk;
      })())),
    );
    const readMs = await time(async () => {
      const { stream } = await engine.guest.readFileStream(warm.id, "/srv/big");
      for await (const _ of stream) void _;
    });
    out.files100MB = { writeMBps: size / 2 ** 20 / (writeMs / 1000), readMBps: size / 2 ** 20 / (readMs / 1000) };

    out.api = await apiFigures(path.join(scratch, "api"));
    const api = out.api as Record<string, Stat>;
    out.apiVsEngineP50 = {
      execTrue: api.execAwaitTrueMs!.p50 / stats(capsuleExec).p50,
      createToFirstExec: api.createToFirstExecMs!.p50 / stats(capsuleCreate).p50,
    };

    log(`memory per idle VM at ${IDLE_VMS} VMs`);
    const idle: string[] = [];
    for (let i = 0; i < IDLE_VMS; i++) idle.push((await engine.createVm()).id);
    await new Promise((r) => setTimeout(r, 3000));
    const perVm = idle.map((id) => pssKiB(vmProcesses([id])) / 1024);
    out.idleVmPssMiB = { ...stats(perVm), total: perVm.reduce((a, b) => a + b, 0) };
    // What the kernel charges the sandbox's memory cgroup (runsc names it after the VM id):
    // its processes' memory plus the guest memory file, less page cache.
    const charged = idle.map((id) => cgroupRssMiB(id)).filter((v): v is number => v !== undefined);
    if (charged.length > 0) out.idleVmCgroupRssMiB = stats(charged);
    for (const id of idle) await engine.deleteVm(id);
  } finally {
    for (const id of rawIds) await raw.destroy(id);
    for (const vm of await engine.listVms()) await engine.deleteVm(vm.id, { wait: true }).catch(() => undefined);
    for (const s of await engine.listSnapshots()) await engine.deleteSnapshot(s.id).catch(() => undefined);
    await engine.close();
    await fs.rm(scratch, { recursive: true, force: true });
  }

  if (asJson) {
    console.log(JSON.stringify(out, null, 2));
    return;
  }
  const f = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : "-");
  const row = (name: string, a: Stat, b?: Stat) =>
    console.log(`${name.padEnd(34)} p50 ${f(a.p50).padStart(8)} ms  p95 ${f(a.p95).padStart(8)} ms${b ? `   raw p50 ${f(b.p50).padStart(7)} p95 ${f(b.p95).padStart(7)}  ratio ${(a.p50 / b.p50).toFixed(2)}x` : ""}`);
  const o = out as Record<string, Record<string, Stat> & Record<string, number>>;
  row("create -> first exec", o.createToFirstExecMs!.capsule!, o.createToFirstExecMs!.rawRunsc);
  row("create from snapshot -> first exec", o.createFromSnapshotToFirstExecMs!.capsule!, o.createFromSnapshotToFirstExecMs!.rawRunsc);
  row("exec `true`", o.execTrueMs!.capsule!, o.execTrueMs!.rawRunscExec);
  row("delete returns", o.deleteReturnsMs as unknown as Stat);
  const api = o.api as unknown as Record<string, Stat>;
  row("API create -> first exec", api.createToFirstExecMs!, o.createToFirstExecMs!.capsule);
  row("API exec-await `true`", api.execAwaitTrueMs!, o.execTrueMs!.capsule);
  console.log("  (API rows: ratio is API vs the engine called in-process)");
  console.log(`snapshot 10 MB / 400 MB written      ${f(o.snapshotMs!["10MB"]!)} ms / ${f(o.snapshotMs!["400MB"]!)} ms`);
  // resume runs beside flush, rename and record, so the phases add up to more than the total.
  for (const [size, ph] of Object.entries(o.snapshotPhasesMs as unknown as Record<string, Record<string, number>>)) {
    console.log(`  phases ${size.padEnd(27)} ${Object.entries(ph).map(([k, v]) => `${k} ${f(v)}`).join(", ")}`);
  }
  console.log(`files 100 MB                         write ${f(o.files100MB!.writeMBps!)} MB/s, read ${f(o.files100MB!.readMBps!)} MB/s`);
  const m = o.idleVmPssMiB as unknown as Stat & { total: number };
  console.log(`idle VM memory (PSS, ${IDLE_VMS} VMs)         p50 ${f(m.p50)} MiB, total ${f(m.total)} MiB`);
  const cg = o.idleVmCgroupRssMiB as unknown as Stat | undefined;
  if (cg) console.log(`idle VM memory (cgroup rss+shmem)     p50 ${f(cg.p50)} MiB`);
  const ph = o.createPhasesP50Ms as unknown as Record<string, number>;
  console.log(`create phases p50 (ms)               ${Object.entries(ph).map(([k, v]) => `${k} ${f(v)}`).join(", ")}`);
}

await main();

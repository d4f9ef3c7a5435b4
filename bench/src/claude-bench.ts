/**
 * Claude Code benchmark, in one run, with the real binary against a scripted local Messages API:
 *   npm run bench:claude            (table)        npm run bench:claude -- --json
 * - `claude -p` round trip: on the host, in a Capsule VM (vm.exec through the API), and by the
 *   runtime's own `runsc exec` into that same VM's sandbox;
 * - from `vms.create({ snapshotId: <Claude Code snapshot> })` to Claude Code's first byte of output.
 * Options: --samples N (default 5). Needs root and a set-up host. Nothing reaches the internet;
 * leaves nothing behind.
 */
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { buildClaudeSnapshot, Capsule, ensureClaudeCodeBinary } from "@capsule/sdk";
import { startFakeAnthropic } from "@capsule/sdk/fake-anthropic";
import { KeyStore, dbPath, openDb, startServer } from "@capsule/server";
import { quantile } from "./measure.js";

/** Runs a command with stdin closed (`claude -p` otherwise waits 3 s for piped input) and returns stdout. */
function runClosed(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...opts, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d));
    child.stderr.on("data", (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else reject(new Error(`${cmd} ${args.join(" ")} exited ${code}: ${stderr.slice(-500)}`));
    });
  });
}
const argv = process.argv.slice(2);
const asJson = argv.includes("--json");
const SAMPLES = argv.includes("--samples") ? Number(argv[argv.indexOf("--samples") + 1]) : 5;
const DATA = process.env.CAPSULE_DATA_DIR ?? "/var/lib/capsule";
const IMAGES = path.join(DATA, "images");
const KEY = "sk-ant-capsule-bench-0123456789abcdefghijKLMNOPQRST";
const ANSWER = "Sandboxed thoughts drift / gVisor holds the kernel / claude answers here";
const PROMPT = "Write a haiku about sandboxes";
const log = (...a: unknown[]) => void (asJson || console.error(...a));

interface Stat {
  n: number;
  p50: number;
  p95: number;
}
function stats(xs: number[]): Stat {
  return { n: xs.length, p50: quantile(xs, 0.5), p95: quantile(xs, 0.95) };
}
async function sample(n: number, fn: () => Promise<void>): Promise<Stat> {
  await fn(); // warm-up, not counted
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    xs.push(performance.now() - t0);
  }
  return stats(xs);
}
function expectAnswer(out: string, where: string): void {
  if (out.trim() !== ANSWER) throw new Error(`${where}: unexpected output ${JSON.stringify(out.slice(0, 200))}`);
}

async function main(): Promise<void> {
  const scratch = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-claude-bench-"));
  const fake = await startFakeAnthropic([{ match: /haiku about sandboxes/, steps: [{ text: ANSWER }] }]);
  const dataDir = path.join(scratch, "data");
  await fs.mkdir(dataDir, { recursive: true });
  const db = openDb(dbPath(dataDir));
  const { key } = new KeyStore(db).createKey("bench");
  db.close();
  const server = await startServer({ dataDir, imagesDir: IMAGES, agentBundleDir: path.join(DATA, "agent"), port: 0, host: "127.0.0.1", egress: "none", allowedHostPorts: [fake.port], logLevel: "warn" });
  const capsule = new Capsule({ apiUrl: server.url, apiKey: key });
  const out: Record<string, unknown> = {};
  try {
    log("Claude Code snapshot (cached binary)");
    const t0 = performance.now();
    const snap = await buildClaudeSnapshot(capsule);
    out.snapshotBuildMs = performance.now() - t0;
    const bin = await ensureClaudeCodeBinary(snap.version);
    out.claudeCodeVersion = snap.version;

    log(`claude -p on the host (${SAMPLES})`);
    const home = path.join(scratch, "home");
    await fs.mkdir(home);
    const hostEnv = { PATH: "/usr/bin:/bin", HOME: home, ANTHROPIC_API_KEY: KEY, ANTHROPIC_BASE_URL: fake.hostBaseUrl, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1" };
    const host = await sample(SAMPLES, async () => expectAnswer(await runClosed(bin, ["-p", PROMPT], { cwd: home, env: hostEnv }), "host"));

    log(`claude -p in a Capsule VM through the API (${SAMPLES}), and by raw runsc exec into the same sandbox`);
    const { vm, vmId } = await capsule.vms.create({ snapshotId: snap.snapshotId, idleTimeoutSeconds: null });
    const vmEnv = { HOME: "/root", ANTHROPIC_API_KEY: KEY, ANTHROPIC_BASE_URL: fake.vmBaseUrl, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1" };
    const vmCmd = `${Object.entries(vmEnv).map(([k, v]) => `${k}=${v}`).join(" ")} claude -p "${PROMPT}" < /dev/null`;
    const inVm = await sample(SAMPLES, async () => expectAnswer((await vm.exec({ command: vmCmd, timeoutMs: 120_000 })).stdout ?? "", "vm"));
    // The runtime's own exec into the very same sandbox (the engine's runsc root, container id =
    // VM id): same image, binary and network, without Capsule's API, agent and shell.
    const envArgs = Object.entries({ ...vmEnv, PATH: "/usr/local/bin:/usr/bin:/bin" }).flatMap(([k, v]) => ["-env", `${k}=${v}`]);
    const raw = await sample(SAMPLES, async () =>
      expectAnswer(await runClosed("runsc", [`--root=${path.join(dataDir, "runtime", "runsc")}`, "exec", ...envArgs, "-cwd", "/root", vmId, "/usr/local/bin/claude", "-p", PROMPT]), "raw runsc exec"),
    );
    await vm.delete();
    out.claudePRoundTripMs = { host, capsuleVm: inVm, rawRunscExec: raw, vmVsHostP50: inVm.p50 / host.p50, vmVsRawP50: inVm.p50 / raw.p50 };

    log(`vms.create from the snapshot -> Claude Code's first byte (${SAMPLES})`);
    const firstByte: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      const t1 = performance.now();
      const { vm: fresh } = await capsule.vms.create({ snapshotId: snap.snapshotId, idleTimeoutSeconds: null });
      const p = fresh.spawn(`claude -p "${PROMPT}"`, { env: { HOME: "/root", ANTHROPIC_API_KEY: KEY, ANTHROPIC_BASE_URL: fake.vmBaseUrl, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1" } });
      p.stdin.end();
      firstByte.push(await new Promise<number>((resolve) => p.stdout.once("data", () => resolve(performance.now() - t1))));
      p.stdout.resume();
      await p.exited;
      await fresh.delete();
      await new Promise((r) => setTimeout(r, 2000)); // let the teardown end before the next sample
    }
    out.createFromSnapshotToFirstByteMs = stats(firstByte);
    await capsule.snapshots.delete({ snapshotId: snap.snapshotId });
  } finally {
    const left = await capsule.vms.list().catch(() => undefined);
    for (const v of left?.vms ?? []) await capsule.vms.delete({ vmId: v.id }).catch(() => undefined);
    await server.close();
    await fake.close();
    await fs.rm(scratch, { recursive: true, force: true });
  }
  if (asJson) return void console.log(JSON.stringify(out, null, 2));
  const f = (n: number) => n.toFixed(0);
  const rt = out.claudePRoundTripMs as Record<string, Stat>;
  for (const [name, s] of [["host", rt.host], ["Capsule VM (vm.exec)", rt.capsuleVm], ["raw runsc exec", rt.rawRunscExec]] as const) {
    console.log(`claude -p round trip, ${name.padEnd(22)} p50 ${f(s!.p50).padStart(6)} ms  p95 ${f(s!.p95).padStart(6)} ms`);
  }
  console.log(`VM vs host p50 ${(rt.capsuleVm!.p50 / rt.host!.p50).toFixed(2)}x, VM vs raw runsc exec p50 ${(rt.capsuleVm!.p50 / rt.rawRunscExec!.p50).toFixed(2)}x`);
  const fb = out.createFromSnapshotToFirstByteMs as Stat;
  console.log(`vms.create(snapshot) -> first byte       p50 ${f(fb.p50).padStart(6)} ms  p95 ${f(fb.p95).padStart(6)} ms`);
}

await main();

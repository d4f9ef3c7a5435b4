/**
 * Test fixtures for the engine: a real Engine on a unique scratch data dir, using the image and
 * agent bundle that `scripts/test.sh` prepared. Everything a test makes is removed in `after`,
 * pass or fail. When the host cannot run sandboxes, tests skip with the reason — except under CI,
 * where that is a failure.
 */
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { after, before } from "node:test";
import { Engine, type EngineOptions, type RuntimeName } from "../src/index.js";

export const IMAGES_DIR = process.env.CAPSULE_IMAGES_DIR ?? "/var/lib/capsule/images";
export const AGENT_BUNDLE = process.env.CAPSULE_AGENT_BUNDLE ?? "/var/lib/capsule/agent";
/** The runtime the suites run on: `runsc` by default; `npm test` runs the applicable ones on runc too. */
export const RUNTIME: RuntimeName = process.env.CAPSULE_TEST_RUNTIME === "runc" ? "runc" : "runsc";
/** The engine's runsc and network stack, as the server takes them (CAPSULE_RUNSC, CAPSULE_NETWORK); unset: the engine's defaults. */
export const RUNSC_OPTIONS: Pick<EngineOptions, "runscPath" | "network"> = {
  ...(process.env.CAPSULE_RUNSC ? { runscPath: process.env.CAPSULE_RUNSC } : {}),
  ...(process.env.CAPSULE_NETWORK ? { network: process.env.CAPSULE_NETWORK as NonNullable<EngineOptions["network"]> } : {}),
};

/** Why this host cannot run the real-sandbox tests, or undefined when it can. */
export async function hostGap(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "tests on real sandboxes need root";
  for (const [p, what] of [
    [`${IMAGES_DIR}/trixie/rootfs`, "the trixie base image (run scripts/setup.sh)"],
    [`${AGENT_BUNDLE}/current/agent/main.js`, "the agent bundle (run scripts/setup.sh)"],
  ] as const) {
    if (!(await fs.access(p).then(() => true, () => false))) return `missing ${what} at ${p}`;
  }
  try {
    execFileSync(RUNTIME, ["--version"], { stdio: "ignore" });
  } catch {
    return `${RUNTIME} is not installed (run scripts/setup.sh)`;
  }
  return undefined;
}

/**
 * {@link hostGap} for test files that manage their own engines or servers: under CI a gap is a
 * failure, not a skip.
 */
export async function sandboxGap(): Promise<string | undefined> {
  const gap = await hostGap();
  if (gap && process.env.CI) throw new Error(`CI must run the sandbox tests, but: ${gap}`);
  return gap;
}

export interface TestEngine {
  engine: Engine;
  dataDir: string;
}

/**
 * Registers before/after hooks that open an engine for the current test file and tear it down
 * (every VM deleted, engine closed, data dir removed). `skip` is set when the host lacks a
 * capability; in CI a missing capability fails instead.
 */
export function useEngine(opts: EngineOptions | (() => EngineOptions) = {}): { get: () => TestEngine; skip: () => string | false } {
  let current: TestEngine | undefined;
  let gap: string | undefined;
  before(async () => {
    gap = await sandboxGap();
    if (gap) return;
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-test-"));
    const engine = await Engine.open({ dataDir, imagesDir: IMAGES_DIR, agentBundleDir: AGENT_BUNDLE, runtime: RUNTIME, ...RUNSC_OPTIONS, ...(typeof opts === "function" ? opts() : opts) });
    current = { engine, dataDir };
  });
  after(async () => {
    if (!current) return;
    await destroyAll(current);
  });
  return {
    get: () => {
      if (!current) throw new Error("engine not open");
      return current;
    },
    skip: () => gap ?? false,
  };
}

export async function destroyAll({ engine, dataDir }: TestEngine): Promise<void> {
  try {
    for (const vm of await engine.listVms()) await engine.deleteVm(vm.id, { wait: true }).catch(() => undefined);
    for (const s of await engine.listSnapshots()) await engine.deleteSnapshot(s.id).catch(() => undefined);
  } finally {
    await engine.close();
    await fs.rm(dataDir, { recursive: true, force: true });
  }
}

/** Host resources that VMs of one data dir hold; all zero after cleanup means no leak. */
export async function countResources(dataDir: string, vmIds?: string[]): Promise<Record<string, number>> {
  const ours = (name: string) => !vmIds || vmIds.some((id) => name.includes(id) || name.includes(id.slice(-12)));
  const mounts = (await fs.readFile("/proc/self/mountinfo", "utf8")).split("\n").filter((l) => l.split(" ")[4]?.startsWith(dataDir) && ours(l.split(" ")[4] ?? "")).length;
  const vmDirs = (await fs.readdir(path.join(dataDir, "vms")).catch(() => [] as string[])).filter(ours).length;
  const netns = (await fs.readdir("/run/netns").catch(() => [] as string[])).filter((n) => n.startsWith("cap-") && ours(n)).length;
  const links = execFileSync("ip", ["-o", "link", "show", "type", "veth"], { encoding: "utf8" });
  const veths = links.split("\n").filter((l) => /^\d+: cv/.test(l) && ours(l.split(":")[1] ?? "")).length;
  const ps = execFileSync("ps", ["-eo", "args"], { encoding: "utf8" });
  const runtimeProcs = ps.split("\n").filter((l) => l.includes(dataDir) && /runsc|runc/.test(l) && ours(l)).length;
  let nftElements = 0;
  try {
    const t = execFileSync("nft", ["list", "table", "inet", "capsule"], { encoding: "utf8" });
    nftElements = (t.match(/"cv[a-z0-9]+"/g) ?? []).filter(ours).length;
  } catch {
    /* table absent: zero elements */
  }
  const loops = execFileSync("losetup", ["-l", "-n", "-O", "BACK-FILE"], { encoding: "utf8" })
    .split("\n")
    .filter((l) => l.includes(dataDir) && ours(l)).length;
  // A sandbox's cgroups are named after its VM id, in every hierarchy (v1) or once (v2).
  let cgroups = 0;
  for (const id of vmIds ?? []) {
    const hierarchies = await fs.readdir("/sys/fs/cgroup").catch(() => [] as string[]);
    for (const h of ["", ...hierarchies]) if (await fs.stat(path.join("/sys/fs/cgroup", h, id)).then((st) => st.isDirectory(), () => false)) cgroups++;
  }
  return { mounts, vmDirs, netns, veths, runtimeProcs, nftElements, loops, cgroups };
}

/** Runs a small server on the host for reachability tests; returns its port and a close(). */
export async function hostTcpServer(host: string): Promise<{ port: number; close: () => Promise<void> }> {
  const net = await import("node:net");
  const server = net.createServer((s) => s.end("host-says-hi\n"));
  await new Promise<void>((r) => server.listen(0, host, r));
  const addr = server.address();
  if (!addr || typeof addr === "string") throw new Error("no port");
  return { port: addr.port, close: () => new Promise((r) => server.close(() => r())) };
}

import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { CommandError, run, runQuiet } from "../host/run.js";
import { listNetns } from "../net/netns.js";
import { removeContainerCgroups } from "./cgroups.js";
import { runscNetworkFlags } from "./runsc.js";

/** How long the probe's sandbox may take to start, run `tini --version` and exit. */
export const NETSTACK_PROBE_TIMEOUT_MS = 30_000;

const PROBE_PREFIX = "capsule-probe-";

/** One probe per runsc binary (path, size, mtime) and process: engines opened again reuse it. */
const probes = new Map<string, Promise<string | undefined>>();

/**
 * Whether this runsc can start gVisor's netstack inside a network namespace: resolves undefined
 * when it can, else why not (runsc's own words). runsc 2024-07 refuses on kernels 6.x ("cannot run
 * with network enabled in root network namespace": it mistakes every netns for the root one), and
 * nothing short of starting a sandbox tells: its version is the same with the fix backported. So
 * the probe starts one, in a scratch netns holding only `lo`, running the agent bundle's static
 * `tini --version` on the bundle itself (read-only) as its root; about 0.3 s.
 */
export async function probeNetstack(bin: string, platform: string, bundleDir: string): Promise<string | undefined> {
  const key = `${await binaryIdentity(bin)}\0${platform}\0${bundleDir}`;
  let probe = probes.get(key);
  if (!probe) {
    probe = startProbeSandbox(bin, platform, bundleDir);
    probes.set(key, probe);
  }
  return probe;
}

async function startProbeSandbox(bin: string, platform: string, bundleDir: string): Promise<string | undefined> {
  await removeStaleProbeNetns();
  const tag = `${process.pid}-${randomBytes(3).toString("hex")}`;
  const ns = `${PROBE_PREFIX}${tag}`;
  const id = `${PROBE_PREFIX}${tag}`;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-netstack-probe-"));
  const root = path.join(dir, "root");
  try {
    await run("ip", ["netns", "add", ns]);
    await run("ip", ["-n", ns, "link", "set", "lo", "up"]);
    await fs.writeFile(path.join(dir, "config.json"), JSON.stringify(probeSpec(bundleDir, `/run/netns/${ns}`)));
    await run(bin, [`--root=${root}`, `--platform=${platform}`, ...runscNetworkFlags("netstack"), "run", `--bundle=${dir}`, id], { timeoutMs: NETSTACK_PROBE_TIMEOUT_MS });
    return undefined;
  } catch (err) {
    const said = err instanceof CommandError ? err.stderr : (err as Error).message;
    return said.split("\n").filter((l) => l.trim() !== "").slice(-3).join(" / ") || String(err);
  } finally {
    await runQuiet(bin, [`--root=${root}`, "delete", "--force", id]);
    await removeContainerCgroups(id).catch(() => undefined);
    await runQuiet("ip", ["netns", "del", ns]);
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** A process killed mid-probe leaves its netns behind; it is named after that process's pid. */
async function removeStaleProbeNetns(): Promise<void> {
  for (const ns of await listNetns(PROBE_PREFIX)) {
    const pid = Number(ns.slice(PROBE_PREFIX.length).split("-")[0]);
    if (Number.isInteger(pid) && pid > 0 && !isAlive(pid)) await runQuiet("ip", ["netns", "del", ns]);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function probeSpec(rootfs: string, netns: string): object {
  return {
    ociVersion: "1.0.2",
    process: { terminal: false, user: { uid: 0, gid: 0 }, args: ["/bin/tini", "--version"], env: ["PATH=/bin"], cwd: "/" },
    root: { path: rootfs, readonly: true },
    hostname: "capsule-probe",
    mounts: [{ destination: "/proc", type: "proc", source: "proc" }],
    linux: { namespaces: [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }, { type: "network", path: netns }] },
  };
}

/** The binary `bin` names (looked up on PATH without a slash) with its size and mtime, or `bin` itself when not found. */
async function binaryIdentity(bin: string): Promise<string> {
  const candidates = bin.includes("/") ? [bin] : (process.env.PATH ?? "").split(":").filter(Boolean).map((d) => path.join(d, bin));
  for (const c of candidates) {
    const st = await fs.stat(c).catch(() => undefined);
    if (st?.isFile()) return `${await fs.realpath(c)}\0${st.size}\0${st.mtimeMs}`;
  }
  return bin;
}

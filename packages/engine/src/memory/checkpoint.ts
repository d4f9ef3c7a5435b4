import fs from "node:fs/promises";
import path from "node:path";
import { CKPT_RESUME_MARKER } from "@capsule/agent-protocol";
import { run, runDetachedTo } from "../host/run.js";

/**
 * Memory checkpoint and restore of a runsc VM with its agent (issue 15). The engine's `Runtime`
 * has no checkpoint or restore yet and the netstack mode they need is landing in `runtime/`, so
 * this module drives runsc itself from what the runtime would give it ({@link RunscCli}); once
 * netstack lands these calls belong in `runtime/runsc.ts` (see docs/memory-snapshots-spike.md).
 */
export interface RunscCli {
  bin: string;
  /** runsc's `--root`, the VM's runtime state. */
  root: string;
  /** The flags the sandbox was run with (platform, network, overlay, host-uds): restore needs the same. */
  sandboxFlags: readonly string[];
}

/** One VM's host side, as the checkpoint sees it. */
export interface CheckpointSource {
  id: string;
  /** Host side of the agent's socket directory (`/.capsule-run`), where the marker goes. */
  runDir: string;
  /** The VM's writable layer (the overlay's upper dir). */
  upperDir: string;
  /** Makes the agent let go of every host socket (`GuestOps.checkpointPrepare`). */
  prepare(): Promise<void>;
}

export interface CheckpointOut {
  /** An empty or absent directory for runsc's image. */
  imageDir: string;
  /** An absent directory that gets a copy of the upper dir as it was at the save. */
  upperCopy: string;
}

export interface CheckpointTimings {
  prepareMs: number;
  pauseMs: number;
  checkpointMs: number;
  copyMs: number;
  /** From the prepare to the VM running again (the agent listens again a few ms later). */
  totalMs: number;
}

/** runsc's default compression costs 2 to 3 times the save's time for images kept on this host. */
const CHECKPOINT_FLAGS = ["--leave-running", "--compression=none"] as const;
const RUNSC_TIMEOUT_MS = 120_000;

/**
 * Checkpoints a running VM and copies its writable layer at the same instant:
 * 1. the agent lets go of its host sockets (runsc refuses to save them);
 * 2. `runsc pause`: from here to the resume nothing in the VM runs, so the layer cannot move;
 * 3. `runsc checkpoint --leave-running` of the paused sandbox (it stays paused after the save);
 * 4. the upper dir is copied;
 * 5. `runsc resume`, and the marker tells the agent to listen again.
 * A refused checkpoint leaves the VM running (the resume and the marker come all the same) and
 * rejects; the caller removes what `out` holds.
 */
export async function checkpointVm(rt: RunscCli, vm: CheckpointSource, out: CheckpointOut): Promise<CheckpointTimings> {
  const lap = stopwatch();
  await vm.prepare();
  const prepareMs = lap();
  let paused = false;
  try {
    await runsc(rt, ["pause", vm.id]);
    paused = true;
    const pauseMs = lap();
    await fs.mkdir(out.imageDir, { recursive: true, mode: 0o700 });
    await runsc(rt, ["checkpoint", ...CHECKPOINT_FLAGS, `--image-path=${out.imageDir}`, vm.id]);
    const checkpointMs = lap();
    await fs.mkdir(out.upperCopy, { mode: 0o755 });
    await run("cp", ["-a", "--reflink=auto", `${vm.upperDir}/.`, out.upperCopy], { timeoutMs: RUNSC_TIMEOUT_MS });
    const copyMs = lap();
    await runsc(rt, ["resume", vm.id]);
    paused = false;
    return { prepareMs, pauseMs, checkpointMs, copyMs, totalMs: prepareMs + pauseMs + checkpointMs + copyMs + lap() };
  } finally {
    // On every path: a VM left paused or deaf would look dead to every later request.
    if (paused) await runsc(rt, ["resume", vm.id]).catch(() => undefined);
    await writeMarker(vm.runDir);
  }
}

/** A new VM to restore an image into: its own id, bundle (spec with its rootfs, run dir, netns) and log. */
export interface RestoreTarget {
  id: string;
  bundleDir: string;
  runDir: string;
  /** The sandbox's stdout and stderr (the guest tmpfs's runtime.log). */
  logFile: string;
}

/**
 * Restores `imageDir` into a new sandbox. The marker goes into the target's run dir first, so the
 * restored agent, whose first look for it comes as soon as it runs, listens again at once.
 * Resolves when runsc reports the sandbox restored (the agent answers a few ms later).
 */
export async function restoreVm(rt: RunscCli, imageDir: string, target: RestoreTarget): Promise<void> {
  await writeMarker(target.runDir);
  const log = await fs.open(target.logFile, "a", 0o600);
  try {
    await runDetachedTo(rt.bin, [`--root=${rt.root}`, ...rt.sandboxFlags, "restore", "--detach", `--image-path=${imageDir}`, `--bundle=${target.bundleDir}`, target.id], log.fd, RUNSC_TIMEOUT_MS);
  } finally {
    await log.close();
  }
}

/**
 * Root in the VM can write its run dir: whatever it put at the marker's name (a symlink to a host
 * file, say) is removed, and the marker is made only where nothing is (O_CREAT|O_EXCL follows
 * no symlink). One planted again in between is the guest's own loss: its agent then waits out
 * its deaf limit.
 */
async function writeMarker(runDir: string): Promise<void> {
  const marker = path.join(runDir, CKPT_RESUME_MARKER);
  await fs.rm(marker, { force: true, recursive: true });
  await fs.writeFile(marker, "", { flag: "wx", mode: 0o600 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "EEXIST") throw err;
  });
}

function runsc(rt: RunscCli, args: string[]): Promise<unknown> {
  return run(rt.bin, [`--root=${rt.root}`, ...args], { timeoutMs: RUNSC_TIMEOUT_MS });
}

/** Each call returns the milliseconds since the previous one (or since the stopwatch was made). */
function stopwatch(): () => number {
  let last = performance.now();
  return () => {
    const now = performance.now();
    const ms = now - last;
    last = now;
    return Math.round(ms * 10) / 10;
  };
}

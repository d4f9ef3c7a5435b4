import fs from "node:fs/promises";
import path from "node:path";
import { CKPT_RESUME_MARKER } from "@capsule/agent-protocol";
import { EngineError, ErrorCode } from "../errors.js";
import type { RestoreGate, Runtime } from "../runtime/types.js";
import { diskUsageBytes } from "../disk/layers.js";

// Memory checkpoint and restore of a runsc VM with its agent (issue 15), through the VM's
// Runtime (`runtime/runsc.ts` holds runsc's argv).

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
  /**
   * Copies the upper dir as it was at the save (while the VM is paused), e.g. into a reserved
   * layer; resolves once the copy is complete.
   */
  copyUpper(upperDir: string): Promise<void>;
  /** An image bigger than this is refused (the guest filled its memory right before): see {@link maxImageBytes}. */
  maxImageBytes: number;
  /**
   * Called once the image is complete and within its bound, before the VM resumes: work on the
   * image (sealing it) can run beside the resume. Not called when the checkpoint fails.
   */
  onSaved?(): void;
}

/**
 * The memory image's bound: the VM's memory limit plus room for gVisor's own state (kernel
 * objects, page tables, the file descriptor table), which an idle VM's 16 MiB image is mostly.
 */
export const MEMORY_IMAGE_SLACK_BYTES = 128 * 1024 * 1024;

export function maxImageBytes(memoryMb: number): number {
  return memoryMb * 1024 * 1024 + MEMORY_IMAGE_SLACK_BYTES;
}

export interface CheckpointTimings {
  prepareMs: number;
  pauseMs: number;
  checkpointMs: number;
  copyMs: number;
  /** From the prepare to the VM running again (the agent listens again a few ms later). */
  totalMs: number;
}

/**
 * Checkpoints a running VM and copies its writable layer at the same instant:
 * 1. the agent lets go of its host sockets (runsc refuses to save them);
 * 2. `runsc pause`: from here to the resume nothing in the VM runs, so the layer cannot move;
 * 3. the upper dir is copied, before the save: with nothing running, either order captures the
 *    same instant, and this one lets a fork make its copies' targets on the layer while runsc
 *    saves the memory (`copyUpper` resolving is that signal);
 * 4. `runsc checkpoint --leave-running` of the paused sandbox (it stays paused after the save);
 *    an image past `maxImageBytes` is refused;
 * 5. `runsc resume`, and the marker tells the agent to listen again.
 * A refused checkpoint leaves the VM running (the resume and the marker come all the same) and
 * rejects; the caller removes what `out` holds.
 */
export async function checkpointVm(rt: Runtime, vm: CheckpointSource, out: CheckpointOut): Promise<CheckpointTimings> {
  const lap = stopwatch();
  // A marker left behind (a crash after it was written, before the agent took it) would make
  // the agent listen again at once, and runsc would refuse to save its socket.
  await fs.rm(path.join(vm.runDir, CKPT_RESUME_MARKER), { force: true, recursive: true });
  await vm.prepare();
  const prepareMs = lap();
  let paused = false;
  try {
    await rt.pause(vm.id);
    paused = true;
    const pauseMs = lap();
    await out.copyUpper(vm.upperDir);
    const copyMs = lap();
    await fs.mkdir(out.imageDir, { recursive: true, mode: 0o700 });
    await rt.checkpoint(vm.id, out.imageDir);
    const checkpointMs = lap();
    const bytes = await diskUsageBytes(out.imageDir);
    if (bytes > out.maxImageBytes) {
      throw new EngineError(ErrorCode.Unsupported, `VM ${vm.id}'s memory image is ${bytes} bytes, more than its memory limit allows (${out.maxImageBytes}); refused`);
    }
    out.onSaved?.();
    await rt.resume(vm.id);
    paused = false;
    return { prepareMs, pauseMs, checkpointMs, copyMs, totalMs: prepareMs + pauseMs + checkpointMs + copyMs + lap() };
  } finally {
    // On every path: a VM left paused or deaf would look dead to every later request.
    if (paused) await rt.resume(vm.id).catch(() => undefined);
    await writeMarker(vm.runDir);
  }
}

/** A new VM to restore an image into: its own id, bundle (spec with its rootfs, run dir, netns) and log. */
export interface RestoreTarget {
  id: string;
  bundleDir: string;
  runDir: string;
  netnsPath: string;
  /** The sandbox's stdout and stderr (the guest tmpfs's runtime.log). */
  logFile: string;
}

/**
 * Restores `imageDir` into a new sandbox; with `gate`, into a target made first, which waits for
 * it (see {@link Runtime.restore}). The marker goes into the target's run
 * dir first, so the restored agent, whose first look for it comes as soon as it runs, listens
 * again at once. Resolves when runsc reports the sandbox restored (the agent answers a few ms later).
 */
export async function restoreVm(rt: Runtime, imageDir: string, target: RestoreTarget, gate?: RestoreGate): Promise<void> {
  await writeMarker(target.runDir);
  await rt.restore(target.id, imageDir, target.bundleDir, target.netnsPath, target.logFile, gate);
}

/**
 * Root in the VM can write its run dir: whatever it put at the marker's name (a symlink to a host
 * file, say) is removed, and the marker is made only where nothing is (O_CREAT|O_EXCL follows
 * no symlink). One planted again in between is the guest's own loss: its agent then waits out
 * its deaf limit.
 */
export async function writeMarker(runDir: string): Promise<void> {
  const marker = path.join(runDir, CKPT_RESUME_MARKER);
  await fs.rm(marker, { force: true, recursive: true });
  await fs.writeFile(marker, "", { flag: "wx", mode: 0o600 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "EEXIST") throw err;
  });
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

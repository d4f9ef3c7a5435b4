import fs from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { run } from "../host/run.js";
import type { PhaseTimer } from "../phase-timer.js";
import { fsyncDir } from "../state/store.js";

/** The suffix of a layer still being copied; such a directory is never a usable layer. */
export const PARTIAL_SUFFIX = ".partial";

/** The pause between two early flushes of a copy under way (see {@link copyLayer}). */
const EARLY_FLUSH_GAP_MS = 20;

/**
 * Turns a VM's upper dir into a read-only layer, step one: a copy (`cp -a` keeps overlay
 * whiteouts, opaque-dir xattrs, ownership, modes, hard links and symlinks as they are, never
 * following links) under a temp name, so a crash never leaves a half layer under the final name.
 * This is the step the VM must be paused for.
 *
 * While `cp` runs, the layers' filesystem is flushed over and over, so the disk writes what is
 * already copied while the rest is still being copied, and {@link sealLayer}'s flush finds only
 * the tail: at 400 MB written the copy and its flush took 176 + 246 ms one after the other here.
 * A clone (FICLONE, which `cp` tries first) cannot serve instead: the upper dir sits in the VM's
 * own ext4 image, another filesystem than the layers'; docs/snapshots.md has the measurements.
 */
export async function copyLayer(upperDir: string, layerDir: string): Promise<void> {
  const tmp = `${layerDir}${PARTIAL_SUFFIX}`;
  await fs.rm(tmp, { recursive: true, force: true });
  const copy = run("cp", ["-a", "--", upperDir, tmp], { timeoutMs: 30 * 60_000 });
  void flushWhile(copy, path.dirname(layerDir));
  await copy;
}

/**
 * Flushes the filesystem holding `dir` (one syncfs a round, the first after one gap, so a small
 * copy starts none) until `task` settles. Not awaited: the VM is not kept paused for a round
 * still under way when the copy ends, which then runs beside {@link sealLayer}'s flush. Best
 * effort: a failed round is left to that flush, the one that counts.
 */
async function flushWhile(task: Promise<unknown>, dir: string): Promise<void> {
  let settled = false;
  const done = () => void (settled = true);
  task.then(done, done);
  for (;;) {
    await sleep(EARLY_FLUSH_GAP_MS);
    if (settled) return;
    await run("sync", ["--file-system", "--", dir]).catch(() => undefined);
  }
}

/**
 * Step two, with the VM running again: makes the copy durable, then gives it its final name.
 * `sync --file-system` flushes every file and directory of the copy (one syncfs, not one fsync
 * per file), then the rename is fsynced too. A record that names the layer is written only after
 * this resolves. Resolves with the layer's size in bytes, measured beside the flush.
 */
export async function sealLayer(layerDir: string, timer?: PhaseTimer): Promise<number> {
  const tmp = `${layerDir}${PARTIAL_SUFFIX}`;
  const [, size] = await Promise.all([run("sync", ["--file-system", "--", tmp], { timeoutMs: 10 * 60_000 }), diskUsageBytes(tmp)]);
  timer?.end("flush");
  await fs.rename(tmp, layerDir);
  await fsyncDir(path.dirname(layerDir));
  timer?.end("rename");
  return size;
}

export async function diskUsageBytes(dir: string): Promise<number> {
  const { stdout } = await run("du", ["-sb", "--", dir]);
  return Number(stdout.split(/\s/)[0] ?? 0);
}

export async function removeTree(dir: string): Promise<void> {
  await fs.rm(dir, { recursive: true, force: true });
}

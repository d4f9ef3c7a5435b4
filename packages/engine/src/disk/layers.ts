import fs from "node:fs/promises";
import path from "node:path";
import { run } from "../host/run.js";
import type { PhaseTimer } from "../phase-timer.js";
import { fsyncDir } from "../state/store.js";

/** The suffix of a layer still being copied; such a directory is never a usable layer. */
export const PARTIAL_SUFFIX = ".partial";

/**
 * Turns a VM's upper dir into a read-only layer, step one: a copy (`cp -a` keeps overlay
 * whiteouts, opaque-dir xattrs, ownership, modes, hard links and symlinks as they are, never
 * following links) under a temp name, so a crash never leaves a half layer under the final name.
 * This is the step the VM must be paused for.
 */
export async function copyLayer(upperDir: string, layerDir: string): Promise<void> {
  const tmp = `${layerDir}${PARTIAL_SUFFIX}`;
  await fs.rm(tmp, { recursive: true, force: true });
  await run("cp", ["-a", "--", upperDir, tmp], { timeoutMs: 30 * 60_000 });
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

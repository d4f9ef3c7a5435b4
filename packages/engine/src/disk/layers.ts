import fs from "node:fs/promises";
import { run } from "../host/run.js";

/**
 * Turns a VM's upper dir into a read-only layer by copying it (`cp -a` keeps overlay whiteouts,
 * opaque-dir xattrs, ownership, modes, hard links and symlinks as they are, never following
 * links). The copy goes to a temp name first, so a crash never leaves a half layer under the final
 * name.
 */
export async function copyLayer(upperDir: string, layerDir: string): Promise<number> {
  const tmp = `${layerDir}.partial`;
  await fs.rm(tmp, { recursive: true, force: true });
  await run("cp", ["-a", "--", upperDir, tmp], { timeoutMs: 30 * 60_000 });
  await fs.rename(tmp, layerDir);
  return diskUsageBytes(layerDir);
}

export async function diskUsageBytes(dir: string): Promise<number> {
  const { stdout } = await run("du", ["-sb", "--", dir]);
  return Number(stdout.split(/\s/)[0] ?? 0);
}

export async function removeTree(dir: string): Promise<void> {
  await fs.rm(dir, { recursive: true, force: true });
}

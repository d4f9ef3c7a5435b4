import fs from "node:fs/promises";
import path from "node:path";
import type { Paths } from "../paths.js";
import { listDir } from "./store.js";

/**
 * The data dir holds tenants' disks and snapshot layers, whose files a VM's root chose, setuid
 * bits included: no local user of the host but root may reach them. Every dir the engine owns is
 * 0700 and every record 0600. Corrected on every open, so a data dir made by an older version,
 * or loosened by hand, is tightened again. Files inside layers keep the modes the VM gave them
 * (they are the VM's filesystem); the 0700 dirs above them are what keeps them out of reach.
 */
export async function secureDataDir(paths: Paths): Promise<void> {
  const dirs = [paths.dataDir, paths.vmsDir, paths.layersDir, paths.memoryDir, paths.snapshotsDir, paths.runtimeRoot];
  for (const dir of dirs) await chmodIfPresent(dir, 0o700);
  for (const id of await listDir(paths.vmsDir)) {
    await chmodIfPresent(paths.vm(id).dir, 0o700);
    await chmodIfPresent(paths.vm(id).record, 0o600);
  }
  for (const name of await listDir(paths.snapshotsDir)) {
    if (name.endsWith(".json")) await chmodIfPresent(path.join(paths.snapshotsDir, name), 0o600);
  }
}

async function chmodIfPresent(p: string, mode: number): Promise<void> {
  try {
    const st = await fs.lstat(p);
    if (st.isSymbolicLink()) return; // never follow a link planted in the data dir
    if ((st.mode & 0o7777) !== mode) await fs.chmod(p, mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}

import crypto from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";

/** Marks the temp files {@link writeJsonAtomic} writes; recovery removes any a crash left. */
export const TEMP_MARK = ".tmp-";

/**
 * Writes JSON atomically and durably: a temp file is written and fsynced, renamed over the
 * target, and the directory is fsynced so the rename itself survives a power cut. A crash never
 * leaves half a file under the final name.
 */
export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  const dir = path.dirname(file);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 }); // engine state is root-only (see host-modes.ts)
  const tmp = `${file}${TEMP_MARK}${process.pid}-${crypto.randomBytes(4).toString("hex")}`;
  try {
    const fh = await fs.open(tmp, "w", 0o600);
    try {
      await fh.writeFile(JSON.stringify(value, null, 2));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dir);
}

/** Makes a directory's entries (creations, renames, removals) durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, "utf8")) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/** Whether anything is at `file` (a stat this process may make). */
export async function pathExists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}

export async function listDir(dir: string): Promise<string[]> {
  try {
    return (await fs.readdir(dir)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
}

import fs from "node:fs/promises";
import path from "node:path";
import { EngineError, ErrorCode } from "../errors.js";

/**
 * One engine per data dir: a lock file holding the owner's pid, created exclusively. A lock whose
 * owner is gone (a crash, a SIGKILL) is stale and taken over.
 */
export class DataDirLock {
  #held = true;

  private constructor(readonly file: string) {}

  /** Takes the lock, or fails with ENGINE_LOCKED naming the live process that holds it. */
  static async acquire(file: string): Promise<DataDirLock> {
    await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await fs.writeFile(file, String(process.pid), { flag: "wx", mode: 0o600 });
        return new DataDirLock(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        const pid = Number(await fs.readFile(file, "utf8").catch(() => "0"));
        if (pid > 0 && pid !== process.pid && processAlive(pid)) {
          throw new EngineError(ErrorCode.EngineLocked, `data dir ${path.dirname(file)} is in use by process ${pid}; stop it or use another data dir`);
        }
        await fs.rm(file, { force: true }); // stale: its owner is gone
      }
    }
    throw new EngineError(ErrorCode.EngineLocked, `could not lock ${file}`);
  }

  async release(): Promise<void> {
    if (!this.#held) return;
    this.#held = false;
    await fs.rm(this.file, { force: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

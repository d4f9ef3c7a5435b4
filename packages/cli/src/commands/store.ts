import fs from "node:fs";
import type { Command } from "commander";
import type { KeyStore } from "@capsule/server";

/**
 * Opens the key store of the data dir named by the `keys` command's --data-dir (or env / default), runs `f`, closes it.
 * The server package (SQLite, the engine) is imported here, not at start-up, so API verbs never load it.
 */
export async function withKeys<T>(cmd: Command, f: (keys: KeyStore) => T): Promise<T> {
  const { dbPath, KeyStore, openDb, resolveConfig } = await import("@capsule/server");
  const { dataDir } = resolveConfig({ dataDir: (cmd.optsWithGlobals() as { dataDir?: string }).dataDir });
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const db = openDb(dbPath(dataDir));
  try {
    return f(new KeyStore(db));
  } finally {
    db.close();
  }
}

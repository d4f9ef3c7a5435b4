import fs from "node:fs";
import type { Command } from "commander";
import { dbPath, KeyStore, openDb, resolveConfig } from "@capsule/server";

/** Opens the key store of the data dir named by the `keys` command's --data-dir (or env / default), runs `f`, closes it. */
export function withKeys<T>(cmd: Command, f: (keys: KeyStore) => T): T {
  const { dataDir } = resolveConfig({ dataDir: (cmd.optsWithGlobals() as { dataDir?: string }).dataDir });
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const db = openDb(dbPath(dataDir));
  try {
    return f(new KeyStore(db));
  } finally {
    db.close();
  }
}

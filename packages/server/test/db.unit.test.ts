/** The server database's durability and file modes: what a crash or another local user can do to it. */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { it } from "node:test";
import { openDb } from "../src/db.js";
import { KeyStore } from "../src/keys.js";
import { scratchDir } from "../test-support/harness.js";

it("commits durably (synchronous=FULL under WAL) and keeps the database files private (0600)", async () => {
  const dir = await scratchDir();
  try {
    const file = path.join(dir, "server.db");
    const db = openDb(file);
    new KeyStore(db).createKey("alice");
    assert.equal(db.pragma("journal_mode", { simple: true }), "wal");
    assert.equal(db.pragma("synchronous", { simple: true }), 2, "2 is FULL");
    for (const f of [file, `${file}-wal`, `${file}-shm`]) {
      const mode = (await fs.stat(f)).mode & 0o777;
      assert.equal(mode.toString(8), "600", `${path.basename(f)} is 0${mode.toString(8)}`);
    }
    db.close();
    // Reopening fixes modes a previous version left open.
    await fs.chmod(file, 0o644);
    const again = openDb(file);
    assert.equal(((await fs.stat(file)).mode & 0o777).toString(8), "600");
    again.close();
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

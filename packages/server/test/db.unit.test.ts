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

it("hands out one compiled statement per SQL string, each run with its own arguments", async () => {
  const dir = await scratchDir();
  try {
    const db = openDb(path.join(dir, "server.db"));
    const sql = "SELECT ? AS v";
    const first = db.prepare(sql);
    assert.equal(db.prepare(sql), first, "the same SQL: the same statement");
    assert.notEqual(db.prepare("SELECT ? AS w"), first);
    assert.deepEqual([db.prepare(sql).get(1), db.prepare(sql).get(2)], [{ v: 1 }, { v: 2 }]);
    // A key is found through the shared statements after others ran between its uses.
    const keys = new KeyStore(db);
    const { key } = keys.createKey("alice");
    assert.equal(keys.authenticate(key)?.name, "alice");
    keys.createKey("bob");
    assert.equal(keys.authenticate(key)?.name, "alice");
    db.close();
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

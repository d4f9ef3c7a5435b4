/**
 * The server's own state in SQLite: accounts, API keys, and which account owns which engine VM
 * and snapshot. The engine keeps VM and snapshot state on disk itself; this database only maps
 * ownership and API-level settings, so it is reconciled against the engine on boot.
 * @module
 */
import fs from "node:fs";
import Database from "better-sqlite3";

export type Db = Database.Database;

/**
 * Numbered migrations, applied in order inside one transaction each; `PRAGMA user_version` holds
 * the number applied last. Never edit a shipped entry: append a new one.
 */
const MIGRATIONS: readonly string[] = [
  // 1: accounts, keys, VMs, snapshots
  `CREATE TABLE accounts (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL UNIQUE,
     created_at TEXT NOT NULL
   );
   CREATE TABLE api_keys (
     id TEXT PRIMARY KEY,
     account_id TEXT NOT NULL REFERENCES accounts(id),
     secret_sha256 TEXT NOT NULL,
     created_at TEXT NOT NULL,
     revoked_at TEXT
   );
   CREATE TABLE vms (
     id TEXT PRIMARY KEY,
     account_id TEXT NOT NULL REFERENCES accounts(id),
     name TEXT,
     idle_timeout_seconds INTEGER,
     activity_threshold_bytes INTEGER NOT NULL DEFAULT 0,
     desired TEXT NOT NULL DEFAULT 'running' CHECK (desired IN ('running', 'suspended', 'stopped')),
     created_at TEXT NOT NULL
   );
   CREATE INDEX vms_account ON vms(account_id);
   CREATE TABLE snapshots (
     id TEXT PRIMARY KEY,
     account_id TEXT NOT NULL REFERENCES accounts(id),
     name TEXT,
     source_vm_id TEXT,
     created_at TEXT NOT NULL
   );
   CREATE INDEX snapshots_account ON snapshots(account_id);`,
  // 2: create intents: written (durably) before the engine makes a VM or snapshot for an account,
  // removed once its row exists. The engine record carries the token in its owner label, so
  // reconcile can tell "made but never recorded" (garbage) from "cannot explain" (quarantine).
  `CREATE TABLE intents (
     token TEXT PRIMARY KEY,
     account_id TEXT NOT NULL,
     kind TEXT NOT NULL CHECK (kind IN ('vm', 'fork', 'snapshot')),
     created_at TEXT NOT NULL
   );`,
  // 3: claimed domains (vms/domains.ts): one account's each, gone with their VM.
  `CREATE TABLE domains (
     domain TEXT PRIMARY KEY,
     account_id TEXT NOT NULL REFERENCES accounts(id),
     vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
     vm_port INTEGER NOT NULL CHECK (vm_port BETWEEN 1 AND 65535),
     created_at TEXT NOT NULL
   );
   CREATE INDEX domains_vm ON domains(vm_id);`,
  // 4: preview access (vms/preview-rows.ts): share links per VM port, and ports made public.
  `CREATE TABLE preview_shares (
     id TEXT PRIMARY KEY,
     account_id TEXT NOT NULL REFERENCES accounts(id),
     vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
     port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
     expires_at INTEGER NOT NULL,
     revoked_at TEXT,
     created_at TEXT NOT NULL
   );
   CREATE INDEX preview_shares_vm ON preview_shares(vm_id);
   CREATE TABLE preview_public_ports (
     vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
     port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
     PRIMARY KEY (vm_id, port)
   );`,
  // 5: declarative snapshot builds (builds/rows.ts). A build's row is written before its builder
  // VM exists (the VM's owner label names the build), so a restart knows every builder for
  // garbage; its phases keep what each printed. A succeeded build names its snapshot: the cache.
  `CREATE TABLE builds (
     id TEXT PRIMARY KEY,
     account_id TEXT NOT NULL REFERENCES accounts(id),
     template_hash TEXT NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'succeeded', 'failed')),
     base_snapshot_id TEXT,
     snapshot_id TEXT,
     planned_phases TEXT NOT NULL,
     failure_reason TEXT,
     started_at TEXT NOT NULL,
     finished_at TEXT,
     updated_at TEXT NOT NULL
   );
   CREATE INDEX builds_hash ON builds(account_id, template_hash);
   CREATE INDEX builds_snapshot ON builds(snapshot_id);
   CREATE TABLE build_phases (
     build_id TEXT NOT NULL REFERENCES builds(id) ON DELETE CASCADE,
     seq INTEGER NOT NULL,
     name TEXT NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('running', 'succeeded', 'failed')),
     snapshot_id TEXT,
     log TEXT NOT NULL DEFAULT '',
     started_at TEXT NOT NULL,
     finished_at TEXT,
     PRIMARY KEY (build_id, seq)
   );`,
];

export function openDb(file: string): Db {
  const db = new Database(file);
  // WAL: readers never block the writer. synchronous=FULL: a committed row (an owner record, a
  // key) is on disk before the call returns, so a crash or power loss right after cannot lose it
  // while the engine already acted on it.
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  reusePreparedStatements(db);
  // Keys' hashes and ownership live here: root only (the WAL and shm files too, once they exist).
  for (const f of [file, `${file}-wal`, `${file}-shm`]) {
    try {
      fs.chmodSync(f, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
  migrate(db);
  return db;
}

/** At most this many distinct SQL strings keep their compiled statement (the code has ~60). */
const STATEMENT_CACHE_MAX = 256;

/**
 * Makes `db.prepare` hand out one compiled statement per SQL string instead of compiling it on
 * every call: the SQL here is fixed per call site and runs per request, and a profile of 50
 * creates at once spent 160 ms of the event loop compiling (the key lookup of every request, the
 * account's VM list of every admission). Sharing is safe because every statement runs to its end
 * within one call (none is iterated) and no caller changes a statement's mode (pluck, raw,
 * expand, safeIntegers), which would change it for every caller.
 */
function reusePreparedStatements(db: Db): void {
  const compile = db.prepare.bind(db);
  const compiled = new Map<string, Database.Statement>();
  db.prepare = ((sql: string) => {
    let stmt = compiled.get(sql);
    if (stmt === undefined) {
      stmt = compile(sql);
      if (compiled.size < STATEMENT_CACHE_MAX) compiled.set(sql, stmt);
    }
    return stmt;
  }) as Db["prepare"];
}

export function migrate(db: Db): void {
  const current = db.pragma("user_version", { simple: true }) as number;
  for (let n = current; n < MIGRATIONS.length; n++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[n] as string);
      db.pragma(`user_version = ${n + 1}`);
    })();
  }
}

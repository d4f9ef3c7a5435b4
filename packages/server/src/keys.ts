/**
 * Accounts and API keys. A key is `cap_<keyId>_<secret>`: the id finds the row, and only the
 * secret's sha256 is stored (the secret is 32 random bytes, so a plain hash is enough — no
 * password stretching needed). Comparison is constant-time. A key is shown once, at creation.
 * @module
 */
import crypto from "node:crypto";
import type { Db } from "./db.js";

export interface Account {
  id: string;
  name: string;
}

export interface KeyInfo {
  id: string;
  accountId: string;
  accountName: string;
  createdAt: string;
  revokedAt: string | null;
}

const KEY_RE = /^cap_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$/;

function sha256(s: string): Buffer {
  return crypto.createHash("sha256").update(s).digest();
}

function randomId(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  return [...crypto.randomBytes(12)].map((b) => alphabet[b % alphabet.length]).join("");
}

/** The key id of a presented key (its public part), or undefined when it is not a key. */
export function keyIdOf(presented: string): string | undefined {
  return KEY_RE.exec(presented)?.[1];
}

export class KeyStore {
  constructor(private readonly db: Db) {}

  /** The account of that name, created on first use. */
  ensureAccount(name: string): Account {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) throw new Error(`account name must match [A-Za-z0-9._-]{1,64}, got ${JSON.stringify(name)}`);
    const found = this.db.prepare("SELECT id, name FROM accounts WHERE name = ?").get(name) as Account | undefined;
    if (found) return found;
    const acc = { id: `acc_${randomId()}`, name };
    this.db.prepare("INSERT INTO accounts (id, name, created_at) VALUES (?, ?, ?)").run(acc.id, name, new Date().toISOString());
    return acc;
  }

  /** Creates a key for the account (created if missing). The returned `key` is never stored. */
  createKey(accountName: string): { key: string; info: KeyInfo } {
    const acc = this.ensureAccount(accountName);
    const id = randomId();
    const secret = crypto.randomBytes(32).toString("base64url");
    const createdAt = new Date().toISOString();
    this.db.prepare("INSERT INTO api_keys (id, account_id, secret_sha256, created_at) VALUES (?, ?, ?, ?)").run(id, acc.id, sha256(secret).toString("hex"), createdAt);
    return { key: `cap_${id}_${secret}`, info: { id, accountId: acc.id, accountName: acc.name, createdAt, revokedAt: null } };
  }

  listKeys(): KeyInfo[] {
    return this.db
      .prepare(
        `SELECT k.id, k.account_id AS accountId, a.name AS accountName, k.created_at AS createdAt, k.revoked_at AS revokedAt
         FROM api_keys k JOIN accounts a ON a.id = k.account_id ORDER BY k.created_at`,
      )
      .all() as KeyInfo[];
  }

  /** Revokes by key id (or the full key). Returns false when no such active key exists. */
  revokeKey(idOrKey: string): boolean {
    const id = KEY_RE.exec(idOrKey)?.[1] ?? idOrKey;
    return this.db.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL").run(new Date().toISOString(), id).changes > 0;
  }

  /**
   * Which of these key ids are still active: read from the database each time, so a key revoked
   * by another process (`capsule keys revoke` writes the file directly) shows at the next call.
   */
  activeKeyIds(ids: Iterable<string>): Set<string> {
    const stmt = this.db.prepare("SELECT 1 FROM api_keys WHERE id = ? AND revoked_at IS NULL");
    const active = new Set<string>();
    for (const id of new Set(ids)) if (stmt.get(id) !== undefined) active.add(id);
    return active;
  }

  /** The account a presented key belongs to, or undefined for a malformed, unknown or revoked key. */
  authenticate(presented: string): Account | undefined {
    const m = KEY_RE.exec(presented);
    if (!m) return undefined;
    const row = this.db
      .prepare("SELECT k.secret_sha256 AS h, a.id, a.name FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.id = ? AND k.revoked_at IS NULL")
      .get(m[1]) as { h: string; id: string; name: string } | undefined;
    if (!row) return undefined;
    return crypto.timingSafeEqual(sha256(m[2] as string), Buffer.from(row.h, "hex")) ? { id: row.id, name: row.name } : undefined;
  }
}

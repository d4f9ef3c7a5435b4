/**
 * Preview access rows: share links (revocable, expiring, per VM port) and ports made public.
 * Both go with their VM (ON DELETE CASCADE). The only code touching these tables.
 * @module
 */
import crypto from "node:crypto";
import type { Db } from "../db.js";
import { ApiError } from "../errors.js";
import type { Account } from "../keys.js";

/** Live (unexpired, unrevoked) share links one account may hold, console handoffs included. */
export const MAX_LIVE_SHARES_PER_ACCOUNT = 1000;

/** 16 lower-case hex characters: a share's public id (its secret is the token's signature). */
function newShareId(): string {
  return crypto.randomBytes(8).toString("hex");
}

export interface ShareRow {
  id: string;
  vmId: string;
  port: number;
  expiresAt: number;
}

export class PreviewRows {
  constructor(private readonly db: Db) {}

  /** The VM's owner: a preview host names the VM, not the account. */
  owner(vmId: string): Account | undefined {
    return this.db.prepare("SELECT a.id AS id, a.name AS name FROM vms v JOIN accounts a ON a.id = v.account_id WHERE v.id = ?").get(vmId) as Account | undefined;
  }

  /**
   * A new share row. The account's dead rows (expired or revoked: no token of theirs opens
   * anything, as a missing row counts as revoked) go first; past {@link MAX_LIVE_SHARES_PER_ACCOUNT}
   * live ones it is refused (BAD_REQUEST, reason ACCOUNT_SHARES).
   */
  createShare(accountId: string, vmId: string, port: number, expiresAt: number, now: number = Date.now()): ShareRow {
    this.db.prepare("DELETE FROM preview_shares WHERE account_id = ? AND (revoked_at IS NOT NULL OR expires_at <= ?)").run(accountId, now);
    const live = (this.db.prepare("SELECT COUNT(*) AS n FROM preview_shares WHERE account_id = ?").get(accountId) as { n: number }).n;
    if (live >= MAX_LIVE_SHARES_PER_ACCOUNT) {
      throw new ApiError("BAD_REQUEST", `the account has ${live} live share links, the most it may hold; revoke some (DELETE /v1/vms/{id}/ports/{port}/shares/{share_id})`, undefined, { reason: "ACCOUNT_SHARES" });
    }
    const id = newShareId();
    this.db.prepare("INSERT INTO preview_shares (id, account_id, vm_id, port, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?)").run(id, accountId, vmId, port, expiresAt, new Date().toISOString());
    return { id, vmId, port, expiresAt };
  }

  /** True while the share exists for that VM port, unrevoked and unexpired. */
  shareLive(id: string, vmId: string, port: number, now: number): boolean {
    return this.db.prepare("SELECT 1 FROM preview_shares WHERE id = ? AND vm_id = ? AND port = ? AND revoked_at IS NULL AND expires_at > ?").get(id, vmId, port, now) !== undefined;
  }

  /** Revokes one of the VM's shares; false when it has no such share. */
  revokeShare(vmId: string, id: string): boolean {
    return this.db.prepare("UPDATE preview_shares SET revoked_at = ? WHERE id = ? AND vm_id = ? AND revoked_at IS NULL").run(new Date().toISOString(), id, vmId).changes > 0;
  }

  /** The VM's live shares (of one port, or all), soonest to expire first. */
  liveShares(vmId: string, now: number, port?: number): ShareRow[] {
    const rows = (
      port === undefined
        ? this.db.prepare("SELECT id, vm_id, port, expires_at FROM preview_shares WHERE vm_id = ? AND revoked_at IS NULL AND expires_at > ? ORDER BY expires_at, id").all(vmId, now)
        : this.db.prepare("SELECT id, vm_id, port, expires_at FROM preview_shares WHERE vm_id = ? AND port = ? AND revoked_at IS NULL AND expires_at > ? ORDER BY expires_at, id").all(vmId, port, now)
    ) as Array<{ id: string; vm_id: string; port: number; expires_at: number }>;
    return rows.map((r) => ({ id: r.id, vmId: r.vm_id, port: r.port, expiresAt: r.expires_at }));
  }

  setPublic(vmId: string, port: number, on: boolean): void {
    if (on) this.db.prepare("INSERT OR IGNORE INTO preview_public_ports (vm_id, port) VALUES (?, ?)").run(vmId, port);
    else this.db.prepare("DELETE FROM preview_public_ports WHERE vm_id = ? AND port = ?").run(vmId, port);
  }

  isPublic(vmId: string, port: number): boolean {
    return this.db.prepare("SELECT 1 FROM preview_public_ports WHERE vm_id = ? AND port = ?").get(vmId, port) !== undefined;
  }

  publicPorts(vmId: string): number[] {
    return (this.db.prepare("SELECT port FROM preview_public_ports WHERE vm_id = ? ORDER BY port").all(vmId) as Array<{ port: number }>).map((r) => r.port);
  }
}

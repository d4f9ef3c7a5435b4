/**
 * The API's own rows for VMs and snapshots in SQLite: which account owns what, the idle settings
 * and what the owner last asked for (`desired`). The only code that reads or writes these tables.
 * Lookups by id take the account and answer VM_NOT_FOUND / SNAPSHOT_NOT_FOUND (404, never 403)
 * for ids it does not own, so other accounts' ids do not leak.
 * @module
 */
import crypto from "node:crypto";
import type { Db } from "../db.js";
import { ApiError } from "../errors.js";
import type { Account } from "../keys.js";
import { DomainRows } from "./domains.js";
import { PreviewRows } from "./preview-rows.js";

/** What the owner asked for last: a `suspended` VM wakes on use, a `stopped` one only on start. */
export type Desired = "running" | "suspended" | "stopped";

/** What the API remembers about a VM besides what the engine keeps. */
export interface VmRow {
  id: string;
  account_id: string;
  name: string | null;
  idle_timeout_seconds: number | null;
  activity_threshold_bytes: number;
  desired: Desired;
  created_at: string;
}

export interface SnapshotRow {
  id: string;
  account_id: string;
  name: string | null;
  source_vm_id: string | null;
  created_at: string;
}

export interface IdleSetting {
  id: string;
  idleTimeoutSeconds: number;
  activityThresholdBytes: number;
}

export class Rows {
  /** The VMs' claimed domains (domains.ts). */
  readonly domains: DomainRows;
  /** Preview share links and public ports (preview-rows.ts). */
  readonly preview: PreviewRows;

  constructor(private readonly db: Db) {
    this.domains = new DomainRows(db);
    this.preview = new PreviewRows(db);
  }

  // ---------------------------------------------------------------- VMs

  /** The account's VM; VM_NOT_FOUND for an id it does not own. */
  ownedVm(account: Account, id: string): VmRow {
    const row = this.db.prepare("SELECT * FROM vms WHERE id = ? AND account_id = ?").get(id, account.id) as VmRow | undefined;
    if (!row) throw new ApiError("VM_NOT_FOUND", `VM not found: ${id}`);
    return row;
  }

  vmsOf(account: Pick<Account, "id">): VmRow[] {
    return this.db.prepare("SELECT * FROM vms WHERE account_id = ? ORDER BY created_at").all(account.id) as VmRow[];
  }

  allVms(): VmRow[] {
    return this.db.prepare("SELECT * FROM vms").all() as VmRow[];
  }

  insertVm(row: Omit<VmRow, "desired">): void {
    this.db
      .prepare("INSERT INTO vms (id, account_id, name, idle_timeout_seconds, activity_threshold_bytes, desired, created_at) VALUES (?, ?, ?, ?, ?, 'running', ?)")
      .run(row.id, row.account_id, row.name, row.idle_timeout_seconds, row.activity_threshold_bytes, row.created_at);
  }

  deleteVm(id: string): void {
    this.db.prepare("DELETE FROM vms WHERE id = ?").run(id);
  }

  setDesired(id: string, desired: Desired): void {
    this.db.prepare("UPDATE vms SET desired = ? WHERE id = ?").run(desired, id);
  }

  /** Sets `desired` only while it still is `from` (nobody asked for something else meanwhile). */
  setDesiredIf(id: string, from: Desired, to: Desired): void {
    this.db.prepare("UPDATE vms SET desired = ? WHERE id = ? AND desired = ?").run(to, id, from);
  }

  renameVm(id: string, name: string | null): void {
    this.db.prepare("UPDATE vms SET name = ? WHERE id = ?").run(name, id);
  }

  setIdleTimeout(id: string, seconds: number | null): void {
    this.db.prepare("UPDATE vms SET idle_timeout_seconds = ? WHERE id = ?").run(seconds, id);
  }

  /** VMs meant to run that have an idle timeout, for the idle monitor. */
  idleSettings(): IdleSetting[] {
    return (
      this.db.prepare("SELECT id, idle_timeout_seconds, activity_threshold_bytes FROM vms WHERE desired = 'running' AND idle_timeout_seconds IS NOT NULL").all() as VmRow[]
    ).map((r) => ({ id: r.id, idleTimeoutSeconds: r.idle_timeout_seconds as number, activityThresholdBytes: r.activity_threshold_bytes }));
  }

  // ---------------------------------------------------------------- snapshots

  /** The account's snapshot; SNAPSHOT_NOT_FOUND for an id it does not own. */
  ownedSnapshot(account: Account, id: string): SnapshotRow {
    const row = this.db.prepare("SELECT * FROM snapshots WHERE id = ? AND account_id = ?").get(id, account.id) as SnapshotRow | undefined;
    if (!row) throw new ApiError("SNAPSHOT_NOT_FOUND", `snapshot not found: ${id}`);
    return row;
  }

  snapshotsOf(account: Pick<Account, "id">): SnapshotRow[] {
    return this.db.prepare("SELECT * FROM snapshots WHERE account_id = ? ORDER BY created_at").all(account.id) as SnapshotRow[];
  }

  allSnapshotIds(): string[] {
    return (this.db.prepare("SELECT id FROM snapshots").all() as Array<{ id: string }>).map((r) => r.id);
  }

  insertSnapshot(row: SnapshotRow): void {
    this.db.prepare("INSERT INTO snapshots (id, account_id, name, source_vm_id, created_at) VALUES (?, ?, ?, ?, ?)").run(row.id, row.account_id, row.name, row.source_vm_id, row.created_at);
  }

  renameSnapshot(id: string, name: string | null): void {
    this.db.prepare("UPDATE snapshots SET name = ? WHERE id = ?").run(name, id);
  }

  deleteSnapshot(id: string): void {
    this.db.prepare("DELETE FROM snapshots WHERE id = ?").run(id);
  }

  // ---------------------------------------------------------------- create intents

  /**
   * Records, durably, that the engine is about to make a VM, forks or a snapshot for this
   * account; returns the token that goes into the engine record's owner label.
   */
  beginIntent(accountId: string, kind: "vm" | "fork" | "snapshot"): string {
    const token = crypto.randomBytes(12).toString("hex");
    this.db.prepare("INSERT INTO intents (token, account_id, kind, created_at) VALUES (?, ?, ?, ?)").run(token, accountId, kind, new Date().toISOString());
    return token;
  }

  endIntent(token: string): void {
    this.db.prepare("DELETE FROM intents WHERE token = ?").run(token);
  }

  intentTokens(): Set<string> {
    return new Set((this.db.prepare("SELECT token FROM intents").all() as Array<{ token: string }>).map((r) => r.token));
  }

  /** True when this database has never held an account: a new, lost or replaced server.db. */
  isEmpty(): boolean {
    const n = (table: string) => (this.db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    return n("accounts") === 0 && n("vms") === 0 && n("snapshots") === 0;
  }
}

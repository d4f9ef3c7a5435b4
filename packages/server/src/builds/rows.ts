/**
 * The builds' rows in SQLite (`builds`, `build_phases`): the only code that reads or writes them.
 * A build's row exists before its builder VM does, and a succeeded build names the snapshot it
 * made, which is what the content-addressed cache looks up.
 * @module
 */
import crypto from "node:crypto";
import type { BuildInfo, BuildPhase, BuildState } from "@capsule/contract/schemas";
import type { Db } from "../db.js";
import { ApiError } from "../errors.js";
import type { Account } from "../keys.js";

/** The most of a phase's output a row keeps: its tail, where the failure usually is. */
export const PHASE_LOG_MAX_CHARS = 64 * 1024;

interface BuildRow {
  id: string;
  account_id: string;
  template_hash: string;
  state: BuildState;
  base_snapshot_id: string | null;
  snapshot_id: string | null;
  planned_phases: string;
  failure_reason: string | null;
  started_at: string;
  finished_at: string | null;
  updated_at: string;
}

interface PhaseRow {
  build_id: string;
  seq: number;
  name: string;
  state: BuildPhase["state"];
  snapshot_id: string | null;
  log: string;
  started_at: string;
  finished_at: string | null;
}

const now = () => new Date().toISOString();

/** The tail of `log` that fits a row. */
export function logTail(log: string): string {
  return log.length <= PHASE_LOG_MAX_CHARS ? log : `[… ${log.length - PHASE_LOG_MAX_CHARS} chars cut]\n${log.slice(-PHASE_LOG_MAX_CHARS)}`;
}

export class BuildRows {
  constructor(private readonly db: Db) {}

  /** A new build in state `running`, written before its builder VM exists; returns its id. */
  insert(accountId: string, templateHash: string, baseSnapshotId: string | undefined, plannedPhases: string[]): string {
    const id = `bld-${crypto.randomBytes(10).toString("hex")}`;
    const t = now();
    this.db
      .prepare("INSERT INTO builds (id, account_id, template_hash, state, base_snapshot_id, planned_phases, started_at, updated_at) VALUES (?, ?, ?, 'running', ?, ?, ?, ?)")
      .run(id, accountId, templateHash, baseSnapshotId ?? null, JSON.stringify(plannedPhases), t, t);
    return id;
  }

  /**
   * The account's latest succeeded build of this hash whose snapshot still exists (a deleted
   * snapshot's build no longer serves the cache).
   */
  cached(accountId: string, templateHash: string): { buildId: string; snapshotId: string } | undefined {
    const row = this.db
      .prepare(
        `SELECT b.id, b.snapshot_id FROM builds b JOIN snapshots s ON s.id = b.snapshot_id
         WHERE b.account_id = ? AND b.template_hash = ? AND b.state = 'succeeded' ORDER BY b.finished_at DESC LIMIT 1`,
      )
      .get(accountId, templateHash) as { id: string; snapshot_id: string } | undefined;
    return row ? { buildId: row.id, snapshotId: row.snapshot_id } : undefined;
  }

  /** The build's row for its account; NOT_FOUND for another account's or an unknown id. */
  owned(account: Pick<Account, "id">, id: string): BuildInfo {
    const row = this.db.prepare("SELECT * FROM builds WHERE id = ? AND account_id = ?").get(id, account.id) as BuildRow | undefined;
    if (!row) throw new ApiError("NOT_FOUND", `build not found: ${id}`);
    return toInfo(row);
  }

  /** One page of the account's builds, newest first, and how many match in all. */
  list(accountId: string, q: { state?: BuildState; limit: number; offset: number }): { builds: BuildInfo[]; totalCount: number } {
    const where = q.state ? "account_id = ? AND state = ?" : "account_id = ?";
    const args: string[] = q.state ? [accountId, q.state] : [accountId];
    const rows = this.db.prepare(`SELECT * FROM builds WHERE ${where} ORDER BY started_at DESC, id LIMIT ? OFFSET ?`).all(...args, q.limit, q.offset) as BuildRow[];
    const total = (this.db.prepare(`SELECT count(*) AS n FROM builds WHERE ${where}`).get(...args) as { n: number }).n;
    return { builds: rows.map(toInfo), totalCount: total };
  }

  /** The build that made this snapshot, if a build made it. */
  ofSnapshot(snapshotId: string): { buildId: string; templateHash: string } | undefined {
    const row = this.db.prepare("SELECT id, template_hash FROM builds WHERE snapshot_id = ?").get(snapshotId) as { id: string; template_hash: string } | undefined;
    return row ? { buildId: row.id, templateHash: row.template_hash } : undefined;
  }

  count(accountId: string): number {
    return (this.db.prepare("SELECT count(*) AS n FROM builds WHERE account_id = ?").get(accountId) as { n: number }).n;
  }

  phases(buildId: string): BuildPhase[] {
    const rows = this.db.prepare("SELECT * FROM build_phases WHERE build_id = ? ORDER BY seq").all(buildId) as PhaseRow[];
    return rows.map((r) => ({
      phaseId: `${r.build_id}-${r.seq}`,
      buildId: r.build_id,
      name: r.name,
      state: r.state,
      snapshotId: r.snapshot_id,
      log: r.log,
      startedAt: r.started_at,
      finishedAt: r.finished_at,
    }));
  }

  /** Starts phase `seq`; returns the function that ends it. */
  beginPhase(buildId: string, seq: number, name: string): (state: "succeeded" | "failed", log: string, snapshotId?: string) => void {
    const t = now();
    this.db.prepare("INSERT INTO build_phases (build_id, seq, name, state, started_at) VALUES (?, ?, ?, 'running', ?)").run(buildId, seq, name, t);
    this.#touch(buildId);
    return (state, log, snapshotId) => {
      this.db
        .prepare("UPDATE build_phases SET state = ?, log = ?, snapshot_id = ?, finished_at = ? WHERE build_id = ? AND seq = ?")
        .run(state, logTail(log), snapshotId ?? null, now(), buildId, seq);
      this.#touch(buildId);
    };
  }

  /** A running phase's log so far (phase-log.ts); an ended phase keeps its final log. */
  phaseProgress(buildId: string, seq: number, log: string): void {
    this.db.prepare("UPDATE build_phases SET log = ? WHERE build_id = ? AND seq = ? AND state = 'running'").run(logTail(log), buildId, seq);
    this.#touch(buildId);
  }

  succeed(buildId: string, snapshotId: string): void {
    const t = now();
    this.db.prepare("UPDATE builds SET state = 'succeeded', snapshot_id = ?, finished_at = ?, updated_at = ? WHERE id = ?").run(snapshotId, t, t, buildId);
  }

  fail(buildId: string, reason: string): void {
    const t = now();
    this.db.prepare("UPDATE builds SET state = 'failed', failure_reason = ?, finished_at = ?, updated_at = ? WHERE id = ? AND state IN ('pending', 'running')").run(reason, t, t, buildId);
    this.db.prepare("UPDATE build_phases SET state = 'failed', finished_at = ? WHERE build_id = ? AND state = 'running'").run(t, buildId);
  }

  /** Builds a server that stopped left unfinished. */
  unfinished(): string[] {
    return (this.db.prepare("SELECT id FROM builds WHERE state IN ('pending', 'running')").all() as Array<{ id: string }>).map((r) => r.id);
  }

  /** Runs `fn` in one transaction (a snapshot's row and its build's success land together). */
  transaction(fn: () => void): void {
    this.db.transaction(fn)();
  }

  #touch(buildId: string): void {
    this.db.prepare("UPDATE builds SET updated_at = ? WHERE id = ?").run(now(), buildId);
  }
}

function toInfo(r: BuildRow): BuildInfo {
  return {
    buildId: r.id,
    accountId: r.account_id,
    state: r.state,
    templateHash: r.template_hash,
    snapshotId: r.snapshot_id,
    baseSnapshotId: r.base_snapshot_id,
    failureReason: r.failure_reason,
    plannedPhases: JSON.parse(r.planned_phases) as string[],
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    updatedAt: r.updated_at,
  };
}

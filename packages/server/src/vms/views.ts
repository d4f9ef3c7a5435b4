/**
 * API objects from the API's rows and the engine's records: VMs and snapshots as the Freestyle
 * client sees them (state names, sizing, snapshot fields), and the state counts for metrics.
 * Read-only: nothing here changes a VM.
 * @module
 */
import type { SnapshotInfo, VmInfo, VmState } from "@capsule/contract/schemas";
import type { Engine, SnapshotRecord, VmInfo as EngineVm, VmState as EngineState } from "@capsule/engine";
import { toApiError } from "../errors.js";
import type { Account } from "../keys.js";
import type { Desired, Rows, SnapshotRow, VmRow } from "./rows.js";

export function apiState(state: EngineState, desired: Desired): VmState {
  switch (state) {
    case "running":
      return "running";
    case "stopping":
      return desired === "suspended" ? "suspending" : "stopped";
    case "stopped":
      return desired === "stopped" ? "stopped" : "suspended";
    case "lost":
      return "lost";
    case "paused":
      // /v1 has no paused state: it is suspended (it wakes on use), and wakes where it was.
      return "suspended";
    default:
      return "starting";
  }
}

/** An API VM with the engine record it was made from, for what only the record says (paused, its network). */
export interface ViewedVm {
  info: VmInfo;
  record: EngineVm;
}

export class Views {
  constructor(
    private readonly engine: Engine,
    private readonly rows: Rows,
    /** The build that made a snapshot, if one did (BuildRows.ofSnapshot). */
    private readonly builtBy: (snapshotId: string) => SnapshotBuild | undefined = () => undefined,
  ) {}

  async list(account: Account): Promise<VmInfo[]> {
    return (await this.listWithEngine(account)).map((v) => v.info);
  }

  /** The account's VMs and their engine records, from one listing of the engine. */
  async listWithEngine(account: Account): Promise<ViewedVm[]> {
    const rows = this.rows.vmsOf(account);
    const byId = new Map((await this.engine.listVms()).map((v) => [v.id, v]));
    return rows.flatMap((r) => {
      const vm = byId.get(r.id);
      return vm ? [{ info: vmView(r, vm), record: vm }] : [];
    });
  }

  async get(account: Account, id: string): Promise<VmInfo> {
    return (await this.getWithEngine(account, id)).info;
  }

  /** The account's VM and its engine record, from one record read. */
  async getWithEngine(account: Account, id: string): Promise<ViewedVm> {
    const row = this.rows.ownedVm(account, id);
    try {
      const vm = await this.engine.getVm(row.id);
      return { info: vmView(row, vm), record: vm };
    } catch (err) {
      throw toApiError(err);
    }
  }

  async listSnapshots(account: Account): Promise<SnapshotInfo[]> {
    const rows = this.rows.snapshotsOf(account);
    const byId = new Map((await this.engine.listSnapshots()).map((s) => [s.id, s]));
    return rows.flatMap((r) => {
      const s = byId.get(r.id);
      return s ? [snapshotView(r, s, this.builtBy(r.id))] : [];
    });
  }

  async getSnapshot(account: Account, id: string): Promise<SnapshotInfo> {
    const row = this.rows.ownedSnapshot(account, id);
    try {
      return snapshotView(row, await this.engine.getSnapshot(row.id), this.builtBy(row.id));
    } catch (err) {
      throw toApiError(err);
    }
  }

  /** Every account's VMs by API state, for metrics. */
  async stateCounts(): Promise<Record<VmState, number>> {
    const counts: Record<VmState, number> = { starting: 0, running: 0, suspending: 0, suspended: 0, stopped: 0, lost: 0 };
    const desired = new Map(this.rows.allVms().map((r) => [r.id, r.desired]));
    for (const vm of await this.engine.listVms()) {
      const d = desired.get(vm.id);
      if (d) counts[apiState(vm.state, d)]++;
    }
    return counts;
  }
}

function vmView(r: VmRow, vm: EngineVm): VmInfo {
  return {
    id: r.id,
    name: r.name,
    state: apiState(vm.state, r.desired),
    createdAt: r.created_at,
    snapshotId: vm.snapshotId ?? null,
    idleTimeoutSeconds: r.idle_timeout_seconds,
    sizing: { vcpuCount: vm.limits.cpus, memSizeMib: vm.limits.memoryMb, rootfsSizeMb: vm.limits.diskMb },
    ...(vm.lostReason !== undefined ? { lostReason: vm.lostReason } : {}),
  };
}

interface SnapshotBuild {
  buildId: string;
  templateHash: string;
}

function snapshotView(r: SnapshotRow, s: SnapshotRecord, built: SnapshotBuild | undefined): SnapshotInfo {
  return {
    snapshotId: r.id,
    name: r.name,
    state: "ready",
    sourceVmId: r.source_vm_id,
    accountId: r.account_id,
    createdAt: r.created_at,
    sizeBytes: s.sizeBytes,
    memory: s.memory !== undefined,
    memoryBytes: s.memory?.bytes ?? 0,
    failed: false,
    cancelled: false,
    lost: false,
    deleted: false,
    snapshotPersistence: { type: "persistent" },
    buildId: built?.buildId ?? null,
    templateHash: built?.templateHash ?? null,
  };
}

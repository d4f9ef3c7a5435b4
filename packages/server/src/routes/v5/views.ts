/**
 * `/v5` objects from the API's own views (vms/views.ts): the same VMs and snapshots, in the shapes
 * `freestyle@0.2.x` reads. Pure functions; nothing here reads the engine or the rows.
 * @module
 */
import type { SnapshotInfo, VmInfo, VmState as V1State } from "@capsule/contract/schemas";
import type { SnapshotData, VmData, VmState } from "@capsule/contract/v5";

/**
 * v5 has no suspended state: a Capsule VM stopped by its idle timeout has lost its processes (it
 * wakes, afresh, on the next call), which is v5's `stopped`, not `paused` (memory kept). A `lost`
 * VM is stopped too; `lostReason` says why.
 */
const STATES: Record<V1State, VmState> = {
  starting: "starting",
  running: "running",
  suspending: "stopped",
  suspended: "stopped",
  stopped: "stopped",
  lost: "stopped",
};

/** `paused`: the engine holds the VM paused with its memory kept (v1 shows it as suspended). */
export function vmData(vm: VmInfo, paused = false): VmData {
  return {
    id: vm.id,
    state: paused ? "paused" : STATES[vm.state],
    slug: null,
    displayName: vm.name,
    resources: { cpu: vm.sizing.vcpuCount, memory: vm.sizing.memSizeMib, storage: vm.sizing.rootfsSizeMb },
    snapshotId: vm.snapshotId,
    idleTimeoutSeconds: vm.idleTimeoutSeconds,
    metadata: {},
    vpcs: [],
    networks: [],
    createdAt: vm.createdAt,
    updatedAt: vm.createdAt,
    ...(vm.lostReason !== undefined ? { lostReason: vm.lostReason } : {}),
  };
}

export function snapshotData(s: SnapshotInfo): SnapshotData {
  return {
    id: s.snapshotId,
    sourceVmId: s.sourceVmId,
    slug: null,
    displayName: s.name,
    accountId: s.accountId,
    public: false,
    autoDeleteSeconds: null,
    ttlSeconds: null,
    lastUsedAt: null,
    createdAt: s.createdAt,
    updatedAt: s.createdAt,
    contents: s.memory ? "memory+disk" : "disk",
    sizeBytes: s.sizeBytes,
    memoryBytes: s.memoryBytes,
  };
}

/** A page of a list, as `limit` and `offset` ask. */
export function page<T>(items: T[], q: { limit?: number | undefined; offset?: number | undefined }): T[] {
  const start = q.offset ?? 0;
  return items.slice(start, q.limit === undefined ? undefined : start + q.limit);
}

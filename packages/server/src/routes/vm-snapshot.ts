import { createRoute } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { SnapshotRequest, SnapshotResult, VmParams } from "../schemas.js";
import { account, errors, json, security } from "./common.js";

/**
 * Captures the VM's disk as a snapshot, and with `memory: true` (Capsule's extension) its memory
 * at the same instant; a running VM keeps running (paused only while its layer is copied and its
 * memory saved). The official client's `{name}` and `{}` bodies take the disk, as Freestyle's v1 did.
 */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/vms/{vm_id}/snapshot",
      summary: "Snapshot a VM's disk (and, with `memory: true`, its memory)",
      description:
        "`memory: true` (Capsule extension) captures the running processes with the disk at one instant: a VM created from the snapshot resumes them. A VM that cannot be checkpointed answers 400 BAD_REQUEST `reason: MEMORY_UNSUPPORTED`, a stopped one 400 VM_NOT_RUNNING; nothing is kept of a refused snapshot. The account's snapshot caps answer 403 SNAPSHOT_LIMIT_EXCEEDED: `reason: ACCOUNT_SNAPSHOTS` (count) or `ACCOUNT_SNAPSHOT_BYTES` (the account's snapshots, memory images included, already hold the byte cap).",
      security,
      request: { params: VmParams, body: { content: { "application/json": { schema: SnapshotRequest } }, required: false } },
      responses: { 200: json(SnapshotResult), ...errors(400, 403, 404) },
    }),
    async (c) => {
      const { vm_id } = c.req.valid("param");
      const acc = account(c);
      // Through the gateway: ownership first, then the hold (another account's 404 touches nothing).
      const body = c.req.valid("json");
      const snap = await svc.gateway.withVm(acc, vm_id, { wake: false }, (vm) => svc.provisioning.snapshot(acc, vm.row, body?.name ?? null, body?.memory ?? false));
      return c.json({ snapshotId: snap.id, sourceVmId: vm_id, sourceVmInstanceId: null }, 200);
    },
  );
}

import { createRoute } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { SnapshotRequest, SnapshotResult, VmParams } from "../schemas.js";
import { account, errors, json, security } from "./common.js";

/** Captures the VM's disk as a snapshot; a running VM keeps running (paused only while its layer is copied). */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/vms/{vm_id}/snapshot",
      summary: "Snapshot a VM's disk",
      description: "The account's snapshot caps answer 403 SNAPSHOT_LIMIT_EXCEEDED: `reason: ACCOUNT_SNAPSHOTS` (count) or `ACCOUNT_SNAPSHOT_BYTES` (the account's snapshots already hold the byte cap).",
      security,
      request: { params: VmParams, body: { content: { "application/json": { schema: SnapshotRequest } }, required: false } },
      responses: { 200: json(SnapshotResult), ...errors(400, 403, 404) },
    }),
    async (c) => {
      const { vm_id } = c.req.valid("param");
      const acc = account(c);
      // Through the gateway: ownership first, then the hold (another account's 404 touches nothing).
      const snap = await svc.gateway.withVm(acc, vm_id, { wake: false }, (vm) => svc.provisioning.snapshot(acc, vm.row, c.req.valid("json")?.name ?? null));
      return c.json({ snapshotId: snap.id, sourceVmId: vm_id, sourceVmInstanceId: null }, 200);
    },
  );
}

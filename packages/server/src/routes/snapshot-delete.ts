import { createRoute, z } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { SnapshotParams } from "../schemas.js";
import { account, errors, json, security } from "./common.js";

/** VMs booted from the snapshot keep working: its layer is freed only when nothing references it. */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "delete",
      path: "/v1/vms/snapshots/{snapshot_id}",
      summary: "Delete a snapshot",
      security,
      request: { params: SnapshotParams },
      responses: { 200: json(z.object({ snapshot_id: z.string() })), ...errors(404) },
    }),
    async (c) => {
      const { snapshot_id } = c.req.valid("param");
      await svc.provisioning.deleteSnapshot(account(c), snapshot_id);
      return c.json({ snapshot_id }, 200);
    },
  );
}

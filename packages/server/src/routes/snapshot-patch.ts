import { createRoute, z } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { PatchSnapshotRequest, SnapshotParams } from "../schemas.js";
import { account, errors, json, security } from "./common.js";

export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "patch",
      path: "/v1/vms/snapshots/{snapshot_id}",
      summary: "Rename a snapshot",
      security,
      request: { params: SnapshotParams, body: { content: { "application/json": { schema: PatchSnapshotRequest } }, required: true } },
      responses: { 200: json(z.object({ snapshot_id: z.string(), name: z.string().nullable() })), ...errors(400, 404) },
    }),
    async (c) => {
      const { snapshot_id } = c.req.valid("param");
      const { name } = c.req.valid("json");
      svc.provisioning.renameSnapshot(account(c), snapshot_id, name);
      return c.json({ snapshot_id, name }, 200);
    },
  );
}

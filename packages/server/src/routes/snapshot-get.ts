import { createRoute } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { SnapshotInfo, SnapshotParams } from "../schemas.js";
import { account, errors, json, security } from "./common.js";

export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({ method: "get", path: "/v1/vms/snapshots/{snapshot_id}", summary: "Get a snapshot", security, request: { params: SnapshotParams }, responses: { 200: json(SnapshotInfo), ...errors(404) } }),
    async (c) => c.json(await svc.views.getSnapshot(account(c), c.req.valid("param").snapshot_id), 200),
  );
}

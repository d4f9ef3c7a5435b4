import { createRoute } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { SnapshotList } from "../schemas.js";
import { account, errors, json, security } from "./common.js";

/** Every snapshot is ready once it exists (snapshots are taken synchronously); include* filters have nothing to add. */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({ method: "get", path: "/v1/vms/snapshots", summary: "List the account's snapshots", security, responses: { 200: json(SnapshotList), ...errors() } }),
    async (c) => {
      const snapshots = await svc.views.listSnapshots(account(c));
      const n = snapshots.length;
      return c.json({ snapshots, totalCount: n, buildingCount: 0, readyCount: n, failedCount: 0, cancelledCount: 0, lostCount: 0, deletedCount: 0 }, 200);
    },
  );
}

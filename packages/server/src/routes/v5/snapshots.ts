/**
 * Snapshots under `/v5`: `POST /v5/vms/{vm_id}/snapshot`, and `/v5/snapshots` list, get, PATCH and
 * DELETE, over the same provisioning, quotas and views as `/v1`. As v5 documents ("the VM's exact
 * state, memory and disk"), a snapshot holds the memory where the VM can be checkpointed, and the
 * disk only otherwise: the records say which (`contents`).
 * @module
 */
import { createRoute } from "@hono/zod-openapi";
import { ListSnapshotsQuery, PatchSnapshotRequest, SnapshotCreated, SnapshotData, SnapshotList, SnapshotRequest } from "@capsule/contract/v5";
import type { App, Deps } from "../../context.js";
import { SnapshotParams, VmParams } from "../../schemas.js";
import { account, errors, json, security } from "../common.js";
import { page, snapshotData } from "./views.js";
import { isNever, unsupportedField } from "./unsupported.js";

const CONTENTS = "`contents: memory+disk`: a VM created from it resumes the source's processes; `disk` (the source could not be checkpointed: a runc VM, a server on host networking, a stopped VM): it starts them afresh.";

/** Refuses the snapshot options Capsule does not have (a slug, auto-delete, a TTL). */
function refuseUnsupported(o: SnapshotRequest): void {
  const feature = o.slug ? "snapshot slugs" : !isNever(o.autoDeleteSeconds) ? "autoDeleteSeconds" : !isNever(o.ttlSeconds) ? "ttlSeconds" : undefined;
  if (feature) throw unsupportedField(feature);
}

export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v5/vms/{vm_id}/snapshot",
      summary: "Snapshot a VM's memory and disk (v5)",
      description: `Captures the VM's memory and disk at one instant where it can be checkpointed, its disk only otherwise. ${CONTENTS} A running VM keeps running (paused only while its memory is saved and its layer copied). \`displayName\` is kept as the snapshot's name. The account's snapshot caps answer 403 SNAPSHOT_LIMIT_EXCEEDED.`,
      security,
      request: { params: VmParams, body: { content: { "application/json": { schema: SnapshotRequest } }, required: false } },
      responses: { 200: json(SnapshotCreated), ...errors(400, 403, 404, 501) },
    }),
    async (c) => {
      const { vm_id } = c.req.valid("param");
      const opts = c.req.valid("json") ?? {};
      refuseUnsupported(opts);
      const acc = account(c);
      const snap = await svc.gateway.withVm(acc, vm_id, { wake: false }, (vm) => svc.provisioning.snapshot(acc, vm.row, opts.displayName || null, "auto"));
      return c.json({ snapshotId: snap.id, sourceVmId: vm_id, snapshot: snapshotData(await svc.views.getSnapshot(acc, snap.id)) }, 200);
    },
  );

  app.openapi(
    createRoute({ method: "get", path: "/v5/snapshots", summary: "List the account's snapshots (v5)", description: CONTENTS, security, request: { query: ListSnapshotsQuery }, responses: { 200: json(SnapshotList), ...errors(400) } }),
    async (c) => {
      const q = c.req.valid("query");
      const all = (await svc.views.listSnapshots(account(c))).map(snapshotData).filter((s) => q.sourceVmId === undefined || s.sourceVmId === q.sourceVmId);
      return c.json({ snapshots: page(all, q), totalCount: all.length }, 200);
    },
  );

  app.openapi(
    createRoute({ method: "get", path: "/v5/snapshots/{snapshot_id}", summary: "Get a snapshot (v5)", security, request: { params: SnapshotParams }, responses: { 200: json(SnapshotData), ...errors(404) } }),
    async (c) => c.json(snapshotData(await svc.views.getSnapshot(account(c), c.req.valid("param").snapshot_id)), 200),
  );

  app.openapi(
    createRoute({
      method: "patch",
      path: "/v5/snapshots/{snapshot_id}",
      summary: "Rename a snapshot (v5)",
      description: "`displayName` sets the snapshot's name (an empty string clears it); slugs, auto-delete and TTLs answer 501.",
      security,
      request: { params: SnapshotParams, body: { content: { "application/json": { schema: PatchSnapshotRequest } }, required: true } },
      responses: { 200: json(SnapshotData), ...errors(400, 404, 501) },
    }),
    async (c) => {
      const { snapshot_id } = c.req.valid("param");
      const body = c.req.valid("json");
      refuseUnsupported(body);
      const acc = account(c);
      if (body.displayName !== undefined) svc.provisioning.renameSnapshot(acc, snapshot_id, body.displayName || null);
      return c.json(snapshotData(await svc.views.getSnapshot(acc, snapshot_id)), 200);
    },
  );

  app.openapi(
    createRoute({ method: "delete", path: "/v5/snapshots/{snapshot_id}", summary: "Delete a snapshot (v5)", description: "VMs created from it keep running: layers are shared by reference.", security, request: { params: SnapshotParams }, responses: { 204: { description: "Deleted" }, ...errors(404) } }),
    async (c) => {
      await svc.provisioning.deleteSnapshot(account(c), c.req.valid("param").snapshot_id);
      return c.body(null, 204);
    },
  );
}

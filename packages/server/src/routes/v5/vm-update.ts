/**
 * Changing a v5 VM: `PATCH /v5/vms/{vm_id}` (its name and idle timeout; what Capsule does not
 * have is refused by name, its "clear" values accepted) and `POST /v5/vms/{vm_id}/resize` (vCPUs
 * and memory grow, from the next start).
 * @module
 */
import { createRoute } from "@hono/zod-openapi";
import { PatchVmRequest, ResizeVmRequest, VmData } from "@capsule/contract/v5";
import type { App, Deps } from "../../context.js";
import { ApiError } from "../../errors.js";
import { VmParams } from "../../schemas.js";
import { account, errors, json, security } from "../common.js";
import { isNever, unsupportedField } from "./unsupported.js";
import { vmDataOf } from "./vm-pause.js";

/** A field Capsule does not have, set to something other than its "clear" value (0.2: "" / -1 / an empty metadata value). */
function unsupportedPatchField(body: PatchVmRequest): string | undefined {
  if (body.slug) return "slugs";
  if (!isNever(body.autoDeleteSeconds)) return "autoDeleteSeconds";
  if (!isNever(body.ttlSeconds)) return "ttlSeconds";
  if (!isNever(body.maxRunSeconds)) return "maxRunSeconds";
  if (!isNever(body.maxRunTotalSeconds)) return "maxRunTotalSeconds";
  if (body.automaticRestart === true) return "automaticRestart";
  if (body.metadata && Object.values(body.metadata).some((v) => v !== "")) return "metadata";
  return undefined;
}

export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "patch",
      path: "/v5/vms/{vm_id}",
      summary: "Update a VM (v5)",
      description: [
        "Changes what is given and leaves the rest. `displayName`: the VM's name (an empty string or null clears it). `idleTimeoutSeconds`: -1 or null never idle-stops the VM, a number of seconds sets the timeout (from the VM's next activity check).",
        "Capsule VMs have no slugs, metadata, auto-delete, TTL, run limits or automatic restart: their clearing values (an empty `slug`, -1 or null, metadata keys with empty values, `automaticRestart: false`) are accepted and change nothing; any other value answers 501 `BAD_REQUEST` (`unsupported: true`) and changes nothing.",
      ].join("\n\n"),
      security,
      request: { params: VmParams, body: { content: { "application/json": { schema: PatchVmRequest } }, required: true } },
      responses: { 200: json(VmData), ...errors(400, 404, 501) },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const acc = account(c);
      const row = svc.rows.ownedVm(acc, c.req.valid("param").vm_id);
      const feature = unsupportedPatchField(body);
      if (feature) throw unsupportedField(feature);
      if (body.displayName !== undefined) svc.rows.renameVm(row.id, body.displayName || null);
      if (body.idleTimeoutSeconds !== undefined) svc.rows.setIdleTimeout(row.id, body.idleTimeoutSeconds === -1 ? null : body.idleTimeoutSeconds);
      return c.json(await vmDataOf(svc, acc, row.id), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v5/vms/{vm_id}/resize",
      summary: "Grow a VM's vCPUs and memory (v5)",
      description: [
        "`cpu` (vCPUs) and `memory` (MiB) only grow, within this server's per-VM maximums (403 VCPU_OVER_PLAN_LIMIT / MEM_OVER_PLAN_LIMIT); asking for less than the VM has is 400 VALIDATION_ERROR, and so is an empty request.",
        "**When they apply:** the new limits are recorded at once (the answer's `resources` show them) but take effect at the VM's next boot. Capsule's gVisor (runsc 2024-07) has no live `runsc update` of a sandbox's cgroup limits, so a running or paused VM keeps the limits it booted with until it is stopped and started again (an idle stop or a v1 stop, then a start). Freestyle applies vCPUs and memory live.",
        "`storage`: growing the disk is not supported yet (501 `BAD_REQUEST`, `unsupported: true`); the VM's current size, or no `storage`, is accepted.",
      ].join("\n\n"),
      security,
      request: { params: VmParams, body: { content: { "application/json": { schema: ResizeVmRequest } }, required: true } },
      responses: { 200: json(VmData), ...errors(400, 403, 404, 501) },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const acc = account(c);
      const vmId = c.req.valid("param").vm_id;
      if (body.cpu === undefined && body.memory === undefined && body.storage === undefined) {
        throw new ApiError("VALIDATION_ERROR", "nothing to resize: give cpu (vCPUs), memory (MiB) or storage (MiB)");
      }
      const { sizing } = await svc.views.get(acc, vmId);
      if (body.storage !== undefined && body.storage < sizing.rootfsSizeMb) {
        throw new ApiError("VALIDATION_ERROR", `a resize only grows: the VM's disk is ${sizing.rootfsSizeMb} MiB, not ${body.storage}`);
      }
      if (body.storage !== undefined && body.storage > sizing.rootfsSizeMb) throw unsupportedField("growing the disk");
      await svc.power.resize(acc, vmId, { ...(body.cpu !== undefined ? { cpus: body.cpu } : {}), ...(body.memory !== undefined ? { memoryMb: body.memory } : {}) });
      return c.json(await vmDataOf(svc, acc, vmId), 200);
    },
  );
}

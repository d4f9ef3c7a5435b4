import { createRoute } from "@hono/zod-openapi";
import { VmBuildRef } from "@capsule/contract/schemas";
import type { App, Deps } from "../context.js";
import { ApiError } from "../errors.js";
import { VmParams } from "../schemas.js";
import { account, errors, json, security } from "./common.js";

/** `vm.getBuild()`: the build that made the snapshot the VM booted from. */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/vms/{vm_id}/build",
      summary: "The build of a VM's snapshot",
      description: "The build that made the snapshot the VM booted from; NOT_FOUND when the VM did not boot from a built snapshot.",
      security,
      request: { params: VmParams },
      responses: { 200: json(VmBuildRef), ...errors(404) },
    }),
    async (c) => {
      const vm = await svc.views.get(account(c), c.req.valid("param").vm_id);
      const buildId = vm.snapshotId ? svc.builds.buildRows.ofSnapshot(vm.snapshotId)?.buildId : undefined;
      if (!buildId) throw new ApiError("NOT_FOUND", `VM ${vm.id} did not boot from a built snapshot`);
      return c.json({ buildId }, 200);
    },
  );
}

import { createRoute, z } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { VmParams } from "../schemas.js";
import { account, errors, json, security } from "./common.js";

/** Capsule VMs have no memory snapshot to compact, so there is nothing to do; answers after the ownership check. */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/vms/{vm_id}/optimize",
      summary: "Optimize a VM (no-op)",
      security,
      request: { params: VmParams },
      responses: { 200: json(z.object({ id: z.string(), message: z.string() })), ...errors(404) },
    }),
    async (c) => {
      const { vm_id } = c.req.valid("param");
      await svc.views.get(account(c), vm_id);
      return c.json({ id: vm_id, message: "nothing to optimize: Capsule VMs keep no memory image" }, 200);
    },
  );
}

import { createRoute, z } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { VmParams } from "../schemas.js";
import { account, errors, json, security } from "./common.js";

/** Answers at once: the VM is gone from the API immediately, its sandbox is torn down in the background. */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "delete",
      path: "/v1/vms/{vm_id}",
      summary: "Delete a VM",
      security,
      request: { params: VmParams },
      responses: { 200: json(z.object({ id: z.string(), recreate: z.boolean() })), ...errors(404) },
    }),
    async (c) => {
      const { vm_id } = c.req.valid("param");
      await svc.provisioning.delete(account(c), vm_id);
      return c.json({ id: vm_id, recreate: false }, 200);
    },
  );
}

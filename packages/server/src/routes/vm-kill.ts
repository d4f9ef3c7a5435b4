import { createRoute, z } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { VmParams } from "../schemas.js";
import { account, errors, json, security } from "./common.js";

export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/vms/{vm_id}/kill",
      summary: "Kill a VM",
      description: "Kills the VM's processes at once (the engine stops the sandbox); the disk stays. It stays stopped until POST start.",
      security,
      request: { params: VmParams },
      responses: { 200: json(z.object({ id: z.string() })), ...errors(404) },
    }),
    async (c) => {
      const { vm_id } = c.req.valid("param");
      await svc.power.halt(account(c), vm_id, "stopped");
      return c.json({ id: vm_id }, 200);
    },
  );
}

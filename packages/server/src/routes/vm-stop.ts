import { createRoute, z } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { VmParams } from "../schemas.js";
import { account, errors, json, security } from "./common.js";

export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/vms/{vm_id}/stop",
      summary: "Stop a VM",
      description: "Stops the VM: its processes end, the disk stays. It stays stopped until POST start.",
      security,
      request: { params: VmParams },
      responses: { 200: json(z.object({ vmId: z.string(), vmInstanceId: z.null() })), ...errors(404) },
    }),
    async (c) => {
      const { vm_id } = c.req.valid("param");
      await svc.power.halt(account(c), vm_id, "stopped");
      return c.json({ vmId: vm_id, vmInstanceId: null }, 200);
    },
  );
}

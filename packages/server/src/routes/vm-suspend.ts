import { createRoute, z } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { VmParams } from "../schemas.js";
import { account, errors, json, security } from "./common.js";

export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/vms/{vm_id}/suspend",
      summary: "Suspend a VM",
      description: "Suspends the VM: processes stop, the disk stays, and the next request for it wakes it transparently.",
      security,
      request: { params: VmParams },
      responses: { 200: json(z.object({ id: z.string(), vmInstanceId: z.null(), snapshotLayerId: z.null() })), ...errors(404) },
    }),
    async (c) => {
      const { vm_id } = c.req.valid("param");
      await svc.power.halt(account(c), vm_id, "suspended");
      return c.json({ id: vm_id, vmInstanceId: null, snapshotLayerId: null }, 200);
    },
  );
}

import { createRoute } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { VmInfo, VmParams } from "../schemas.js";
import { account, errors, json, security } from "./common.js";

export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({ method: "get", path: "/v1/vms/{vm_id}", summary: "Get a VM", security, request: { params: VmParams }, responses: { 200: json(VmInfo), ...errors(404) } }),
    async (c) => {
      const vm = await svc.views.get(account(c), c.req.valid("param").vm_id);
      return c.json({ ...vm, recreate: false, vmInstanceId: null }, 200);
    },
  );
}

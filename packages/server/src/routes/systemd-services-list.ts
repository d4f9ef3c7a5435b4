import { createRoute } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { LinuxUserHeader, SystemdServiceList, VmParams } from "../schemas.js";
import { statusView } from "../services.js";
import { account, errors, json, linuxUser, security } from "./common.js";

/** The VM's services with their states; a Linux-user-scoped request sees only that user's. */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/vms/{vm_id}/systemd/services",
      summary: "List services",
      security,
      request: { params: VmParams, headers: LinuxUserHeader },
      responses: { 200: json(SystemdServiceList), ...errors(404) },
    }),
    async (c) => {
      const user = linuxUser(c);
      const services = await svc.gateway.withVm(account(c), c.req.valid("param").vm_id, {}, (_vm, guest) => guest.serviceList());
      return c.json({ services: services.filter((s) => user === undefined || s.user === user).map(statusView) }, 200);
    },
  );
}

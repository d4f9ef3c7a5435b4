import { createRoute } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { LinuxUserHeader, ServiceParams, SystemdServiceStatus } from "../schemas.js";
import { scopedStatus, serviceId, statusView } from "../services.js";
import { account, errors, json, linuxUser, security } from "./common.js";

/** activeState/subState as systemd names them (active/running, active/exited, inactive/dead, failed/failed, activating/...). */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/vms/{vm_id}/systemd/services/{service_id}/status",
      summary: "A service's status",
      security,
      request: { params: ServiceParams, headers: LinuxUserHeader },
      responses: { 200: json(SystemdServiceStatus), ...errors(400, 404) },
    }),
    async (c) => {
      const { vm_id, service_id } = c.req.valid("param");
      const name = serviceId(service_id);
      const status = await svc.gateway.withVm(account(c), vm_id, {}, (_vm, guest) => scopedStatus(guest, name, linuxUser(c)));
      return c.json(statusView(status), 200);
    },
  );
}

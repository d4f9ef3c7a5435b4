import { createRoute } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { LinuxUserHeader, ServiceParams, SystemdDeleteResult } from "../schemas.js";
import { scopedStatus, serviceId } from "../services.js";
import { account, errors, json, linuxUser, security } from "./common.js";

/** Stops the service, then removes its definition and its logs from the VM. */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "delete",
      path: "/v1/vms/{vm_id}/systemd/services/{service_id}",
      summary: "Delete a service",
      security,
      request: { params: ServiceParams, headers: LinuxUserHeader },
      responses: { 200: json(SystemdDeleteResult), ...errors(400, 404) },
    }),
    async (c) => {
      const { vm_id, service_id } = c.req.valid("param");
      const name = serviceId(service_id);
      await svc.gateway.withVm(account(c), vm_id, {}, async (_vm, guest) => {
        await scopedStatus(guest, name, linuxUser(c));
        await guest.serviceDelete(name);
      });
      return c.json({ success: true, message: `service ${name} stopped and deleted` }, 200);
    },
  );
}

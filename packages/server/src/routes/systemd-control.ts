import { createRoute } from "@hono/zod-openapi";
import { SERVICE_ACTIONS, type ServiceAction, type ServiceStatus } from "@capsule/engine";
import type { App, Deps } from "../context.js";
import { toApiError } from "../errors.js";
import { LinuxUserHeader, SystemdControlRequest, SystemdControlResult, VmParams } from "../schemas.js";
import { scopedStatus, serviceId } from "../services.js";
import { account, errors, json, linuxUser, security } from "./common.js";

/** Whether an action reached what it asked for. */
const REACHED: Record<ServiceAction, (s: ServiceStatus) => boolean> = {
  start: (s) => s.activeState === "active" || (s.activeState === "inactive" && s.result === "success"),
  restart: (s) => s.activeState === "active" || (s.activeState === "inactive" && s.result === "success"),
  stop: (s) => s.activeState === "inactive" || s.activeState === "failed",
};

/**
 * POST /v1/vms/{vm_id}/systemd/{start|stop|restart}: the three routes of one shape. Each service
 * is acted on in the order given and gets its own result: one that does not exist (or is another
 * Linux user's) is `success: false` with the reason, not a failed request.
 */
export function register(app: App, { svc }: Deps): void {
  for (const action of SERVICE_ACTIONS) {
    app.openapi(
      createRoute({
        method: "post",
        path: `/v1/vms/{vm_id}/systemd/${action}`,
        summary: `${action[0]?.toUpperCase()}${action.slice(1)} services`,
        security,
        request: { params: VmParams, headers: LinuxUserHeader, body: { content: { "application/json": { schema: SystemdControlRequest } }, required: true } },
        responses: { 200: json(SystemdControlResult), ...errors(400, 404) },
      }),
      async (c) => {
        const names = c.req.valid("json").services.map((s) => ({ id: s.id, name: serviceId(s.id) }));
        const user = linuxUser(c);
        const results = await svc.gateway.withVm(account(c), c.req.valid("param").vm_id, {}, async (_vm, guest) => {
          const out: Array<{ serviceId: string; success: boolean; message: string }> = [];
          for (const { id, name } of names) {
            try {
              await scopedStatus(guest, name, user);
              const status = await guest.serviceControl(name, action);
              out.push({ serviceId: id, success: REACHED[action](status), message: `${name}: ${status.activeState} (${status.subState}), result ${status.result}` });
            } catch (err) {
              const e = toApiError(err);
              if (e.code !== "SERVICE_NOT_FOUND") throw e;
              out.push({ serviceId: id, success: false, message: e.message });
            }
          }
          return out;
        });
        return c.json({ results }, 200);
      },
    );
  }
}

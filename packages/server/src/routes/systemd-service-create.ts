import { createRoute } from "@hono/zod-openapi";
import { isEngineError } from "@capsule/engine";
import type { App, Deps } from "../context.js";
import { ApiError } from "../errors.js";
import { LinuxUserHeader, SystemdCreateResult, SystemdServiceSpec, VmParams } from "../schemas.js";
import { checkScopedSpec, toServiceSpec } from "../services.js";
import { account, errors, json, linuxUser, security } from "./common.js";

/**
 * Defines a service in the VM (persisted there: it survives a restart and travels with
 * snapshots) and, when enabled (the default), starts it and answers once it is up — a oneshot
 * once it ran — or after the agent's settle wait. It runs as `user`, else the request's Linux user;
 * a request with a Linux user may only define services running as that user.
 */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/vms/{vm_id}/systemd/services",
      summary: "Create a service",
      security,
      request: { params: VmParams, headers: LinuxUserHeader, body: { content: { "application/json": { schema: SystemdServiceSpec } }, required: true } },
      responses: { 200: json(SystemdCreateResult), ...errors(400, 404, 409, 501) },
    }),
    async (c) => {
      const spec = toServiceSpec(c.req.valid("json"), linuxUser(c));
      checkScopedSpec(spec, linuxUser(c));
      const [status] = await svc.gateway.withVm(account(c), c.req.valid("param").vm_id, {}, (_vm, guest) =>
        guest.serviceDefine([spec], { replace: false, start: true }).catch((err: unknown) => {
          if (isEngineError(err, "ALREADY_EXISTS")) throw new ApiError("SERVICE_ALREADY_EXISTS", `service ${JSON.stringify(spec.name)} already exists in the VM`);
          throw err;
        }),
      );
      const state = status ? `${status.activeState} (${status.subState})` : "defined";
      return c.json({ success: true, message: `service ${spec.name} created: ${spec.enable ? state : "not enabled, not started"}`, serviceName: spec.name }, 200);
    },
  );
}

import { createRoute, z } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { ApiError } from "../errors.js";
import { DEFAULT_SYSTEMD_LOG_LINES, LinuxUserHeader, MAX_SYSTEMD_LOG_LINES, ServiceParams, SystemdLogs } from "../schemas.js";
import { logsView, scopedStatus, serviceId } from "../services.js";
import { account, errors, json, linuxUser, security } from "./common.js";

const LogsQuery = z.object({
  lines: z.coerce.number().int().min(1).max(MAX_SYSTEMD_LOG_LINES).optional().openapi({ description: `The newest lines to answer (default ${DEFAULT_SYSTEMD_LOG_LINES}).` }),
  since: z.string().max(64).optional().openapi({ description: "Only lines at or after this time (ISO 8601, or anything Date.parse reads)." }),
});

/** The service's newest log lines (stdout, stderr and the supervisor's own), oldest first. */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/vms/{vm_id}/systemd/services/{service_id}/logs",
      summary: "A service's logs",
      security,
      request: { params: ServiceParams, headers: LinuxUserHeader, query: LogsQuery },
      responses: { 200: json(SystemdLogs), ...errors(400, 404) },
    }),
    async (c) => {
      const { vm_id, service_id } = c.req.valid("param");
      const { lines, since } = c.req.valid("query");
      const name = serviceId(service_id);
      const sinceMs = since === undefined ? undefined : Date.parse(since);
      if (sinceMs !== undefined && !(sinceMs >= 0)) throw new ApiError("VALIDATION_ERROR", `since: ${JSON.stringify(since)} is not a time`);
      const entries = await svc.gateway.withVm(account(c), vm_id, {}, async (_vm, guest) => {
        await scopedStatus(guest, name, linuxUser(c));
        return guest.serviceLogs(name, { lines: lines ?? DEFAULT_SYSTEMD_LOG_LINES, ...(sinceMs !== undefined ? { sinceMs } : {}) });
      });
      return c.json(logsView(name, entries), 200);
    },
  );
}

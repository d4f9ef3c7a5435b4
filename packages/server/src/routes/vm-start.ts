import { createRoute, z } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { MAX_IDLE_TIMEOUT_SECONDS, VmParams } from "../schemas.js";
import { account, errors, json, security } from "./common.js";

const StartBody = z
  .object({
    idleTimeoutSeconds: z.number().int().min(1).max(MAX_IDLE_TIMEOUT_SECONDS).nullish(),
    waitForReadySignal: z.boolean().optional(),
    readySignalTimeoutSeconds: z.number().optional(),
    activityThresholdBytes: z.number().int().min(0).optional(),
  })
  .openapi("StartVmRequest");

/** Boots a stopped or suspended VM on the disk it had; answers the host names claimed for it. */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/vms/{vm_id}/start",
      summary: "Start a VM",
      security,
      request: { params: VmParams, body: { content: { "application/json": { schema: StartBody } }, required: false } },
      responses: { 200: json(z.object({ id: z.string(), domains: z.array(z.string()), console_url: z.null() })), ...errors(404) },
    }),
    async (c) => {
      const { vm_id } = c.req.valid("param");
      await svc.power.start(account(c), vm_id, c.req.valid("json")?.idleTimeoutSeconds);
      // The names claimed for it (a fork's new VMs have none: a name stays with its VM).
      return c.json({ id: vm_id, domains: svc.rows.domains.ofVm(vm_id), console_url: null }, 200);
    },
  );
}

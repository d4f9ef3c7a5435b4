import { createRoute, z } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { VmSummary } from "../schemas.js";
import type { VmView } from "../vm-service.js";
import { account, errors, json, security } from "./common.js";

const VmList = z
  .object({
    vms: z.array(VmSummary),
    totalCount: z.number(),
    runningCount: z.number(),
    startingCount: z.number(),
    suspendingCount: z.number(),
    suspendedCount: z.number(),
    stoppedCount: z.number(),
  })
  .openapi("VmList");

export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({ method: "get", path: "/v1/vms", summary: "List the account's VMs", security, responses: { 200: json(VmList), ...errors() } }),
    async (c) => {
      const vms = await svc.views.list(account(c));
      const count = (s: VmView["state"]) => vms.filter((v) => v.state === s).length;
      return c.json(
        {
          vms,
          totalCount: vms.length,
          runningCount: count("running"),
          startingCount: count("starting"),
          suspendingCount: count("suspending"),
          suspendedCount: count("suspended"),
          stoppedCount: count("stopped"),
        },
        200,
      );
    },
  );
}

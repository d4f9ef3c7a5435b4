import { createRoute } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { VmList, type VmInfo } from "../schemas.js";
import { account, errors, json, security } from "./common.js";

export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({ method: "get", path: "/v1/vms", summary: "List the account's VMs", security, responses: { 200: json(VmList), ...errors() } }),
    async (c) => {
      const vms = await svc.views.list(account(c));
      const count = (s: VmInfo["state"]) => vms.filter((v) => v.state === s).length;
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

import { createRoute } from "@hono/zod-openapi";
import { BuildPhases } from "@capsule/contract/schemas";
import type { App, Deps } from "../context.js";
import { BuildParams } from "../schemas.js";
import { account, errors, json, security } from "./common.js";

/** `Build.phases()`: each phase of a build with its state and the tail of its log. */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({ method: "get", path: "/v1/vms/builds/{build_id}/phases", summary: "List a build's phases", security, request: { params: BuildParams }, responses: { 200: json(BuildPhases), ...errors(404) } }),
    async (c) => {
      const build = svc.builds.buildRows.owned(account(c), c.req.valid("param").build_id);
      return c.json({ phases: svc.builds.buildRows.phases(build.buildId) }, 200);
    },
  );
}

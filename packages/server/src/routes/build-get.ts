import { createRoute } from "@hono/zod-openapi";
import { BuildInfo } from "@capsule/contract/schemas";
import type { App, Deps } from "../context.js";
import { BuildParams } from "../schemas.js";
import { account, errors, json, security } from "./common.js";

/** `Build.get()` / `.wait()`: a build's state, planned phases and failure reason. */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({ method: "get", path: "/v1/vms/builds/{build_id}", summary: "Get a build", security, request: { params: BuildParams }, responses: { 200: json(BuildInfo), ...errors(404) } }),
    async (c) => c.json(svc.builds.buildRows.owned(account(c), c.req.valid("param").build_id), 200),
  );
}

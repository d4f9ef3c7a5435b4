import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context.js";
import { json } from "./common.js";

/** Liveness: the process answers. Public, so load balancers need no key. */
export function register(app: App): void {
  app.openapi(createRoute({ method: "get", path: "/healthz", summary: "Health check", responses: { 200: json(z.object({ ok: z.boolean() })) } }), (c) => c.json({ ok: true }, 200));
}

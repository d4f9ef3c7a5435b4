import { createRoute, z } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { errors, security } from "./common.js";

/** Prometheus text format. Needs a key: VM counts span every account. */
export function register(app: App, { metrics }: Deps): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/metrics",
      summary: "Prometheus metrics",
      security,
      responses: { 200: { description: "Prometheus text exposition", content: { "text/plain": { schema: z.string() } } }, ...errors() },
    }),
    async (c) => c.text(await metrics.registry.metrics(), 200, { "content-type": metrics.registry.contentType }),
  );
}

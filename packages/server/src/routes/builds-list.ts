import { createRoute } from "@hono/zod-openapi";
import { BuildList, BuildListQuery } from "@capsule/contract/schemas";
import type { App, Deps } from "../context.js";
import { account, errors, json, security } from "./common.js";

/** A page when the query names none: enough for the console's list and the CLI's progress. */
const DEFAULT_PAGE = 50;

/** Capsule's: the account's builds, newest first (the console's Builds page; the CLI's progress finds its build here). */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/vms/builds",
      summary: "List the account's builds",
      description: "Newest first; `state` filters, `limit` (at most 200) and `offset` page.",
      security,
      request: { query: BuildListQuery },
      responses: { 200: json(BuildList), ...errors(400) },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const page = { limit: q.limit ?? DEFAULT_PAGE, offset: q.offset ?? 0 };
      const { builds, totalCount } = svc.builds.buildRows.list(account(c).id, { ...(q.state ? { state: q.state } : {}), ...page });
      return c.json({ builds, totalCount, ...page }, 200);
    },
  );
}

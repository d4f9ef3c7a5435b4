/** Pieces every route definition uses: security, error responses, the Linux-user header. */
import type { Context } from "hono";
import { ErrorBody } from "../schemas.js";
import { LINUX_USER_HEADER, type AppEnv } from "../context.js";
import type { Account } from "../keys.js";

export const security = [{ bearer: [] }];

/** OpenAPI entries for error answers, keyed by status, each `{code, message}`. */
export function errors(...statuses: number[]): Record<number, { description: string; content: { "application/json": { schema: typeof ErrorBody } } }> {
  const out: Record<number, { description: string; content: { "application/json": { schema: typeof ErrorBody } } }> = {};
  for (const s of [401, ...statuses]) out[s] = { description: "Error: `{code, message}` with a code the Freestyle client knows", content: { "application/json": { schema: ErrorBody } } };
  return out;
}

export function json<T>(schema: T, description = "OK") {
  return { description, content: { "application/json": { schema } } };
}

export function account(c: Context<AppEnv>): Account {
  return c.get("account");
}

/** The request's Linux user; undefined means root. Validated by the route's header schema. */
export function linuxUser(c: Context<AppEnv>): string | undefined {
  return c.req.header(LINUX_USER_HEADER) || undefined;
}

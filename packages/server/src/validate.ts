/**
 * Validation for the few routes registered outside `app.openapi` (those whose answer is a raw
 * stream, which its typed handlers cannot return); same errors as the OpenAPI default hook.
 */
import type { Context } from "hono";
import type { z } from "@hono/zod-openapi";
import { ApiError, type ApiErrorCode } from "./errors.js";

export function check<T extends z.ZodType>(schema: T, value: unknown, code: ApiErrorCode, what: string): z.infer<T> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const detail = r.error.issues.map((i) => `${[what, ...i.path].join(".")}: ${i.message}`).join("; ");
  throw new ApiError(code, `invalid request: ${detail}`);
}

export async function jsonBody(c: Context, code: ApiErrorCode): Promise<unknown> {
  try {
    return await c.req.json();
  } catch {
    throw new ApiError(code, "request body must be JSON");
  }
}

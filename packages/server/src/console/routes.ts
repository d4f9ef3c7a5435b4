/**
 * The web console's server side: the static bundle under `/console/` (built by
 * `packages/console`, no CDN) and its small private API under `/console/api/`:
 *
 * - `POST /console/api/session` `{key}` → sets the session cookie, answers `{account, expiresAt}`
 * - `GET /console/api/session` → `{account}` while signed in
 * - `DELETE /console/api/session` → signs out (the session is revoked server-side)
 * - `POST /console/api/pty-token` `{vmId, user?}` → `{token, expiresAt}` for one PTY WebSocket
 *
 * Every one of them needs `X-Capsule-Console: 1` (CSRF: a cross-site form cannot send it). These
 * paths bypass the bearer middleware; they authenticate themselves.
 * @module
 */
import fs from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { LINUX_USER_RE } from "@capsule/contract/wire";
import type { App, AppEnv, Deps } from "../context.js";
import { ApiError } from "../errors.js";
import { HANDOFF_PARAM } from "../preview/access.js";
import { CONSOLE_HEADER, readCookie, SESSION_COOKIE, SESSION_TTL_MS } from "./auth.js";

/** Paths served by the console itself (static files and its private API). */
export function isConsolePath(p: string): boolean {
  return p === "/console" || p.startsWith("/console/");
}

/** Where the built bundle is: CAPSULE_CONSOLE_DIR, else packages/console/dist/web next to this package. */
export function consoleDir(): string {
  return process.env.CAPSULE_CONSOLE_DIR ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../../console/dist/web");
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".woff2": "font/woff2",
  ".map": "application/json",
};

/** Same-origin only; xterm.js sets inline styles, hence style-src 'unsafe-inline'. */
const CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";


/**
 * The largest body the console's API reads (sign-in is unauthenticated): counted on the bytes
 * actually read, so a chunked body without Content-Length stops here too.
 */
export const CONSOLE_BODY_LIMIT_BYTES = 4 * 1024;

function fail(c: Context<AppEnv>, err: ApiError): Response {
  return c.json(err.body(), err.status as 400);
}

function requireConsoleHeader(c: Context<AppEnv>): ApiError | undefined {
  return c.req.header(CONSOLE_HEADER) === "1" ? undefined : new ApiError("FORBIDDEN", `console requests must send ${CONSOLE_HEADER}: 1`);
}

function cookie(c: Context<AppEnv>, value: string, maxAgeSeconds: number): string {
  const secure = c.req.url.startsWith("https:") || c.req.header("x-forwarded-proto") === "https";
  return `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${secure ? "; Secure" : ""}`;
}

async function jsonBody(c: Context<AppEnv>): Promise<Record<string, unknown>> {
  try {
    const b = (await c.req.json()) as unknown;
    if (typeof b === "object" && b !== null && !Array.isArray(b)) return b as Record<string, unknown>;
  } catch {
    // fall through
  }
  throw new ApiError("VALIDATION_ERROR", "body must be a JSON object");
}

export function register(app: App, deps: Deps): void {
  const auth = deps.console;

  app.use(
    "/console/api/*",
    bodyLimit({ maxSize: CONSOLE_BODY_LIMIT_BYTES, onError: (c) => fail(c, new ApiError("VALIDATION_ERROR", `console request bodies are limited to ${CONSOLE_BODY_LIMIT_BYTES} bytes`, 413)) }),
  );

  app.post("/console/api/session", async (c) => {
    const bad = requireConsoleHeader(c);
    if (bad) return fail(c, bad);
    if (!auth) return fail(c, new ApiError("SERVICE_UNAVAILABLE", "the console is not enabled on this server"));
    const body = await jsonBody(c);
    const made = typeof body.key === "string" ? auth.signIn(body.key.trim()) : undefined;
    if (!made) return fail(c, new ApiError("UNAUTHORIZED", "invalid or revoked API key"));
    c.header("Set-Cookie", cookie(c, made.sessionId, Math.floor(SESSION_TTL_MS / 1000)));
    c.header("Cache-Control", "no-store");
    return c.json({ account: made.account.name, expiresAt: new Date(made.expiresAt).toISOString() }, 200);
  });

  app.get("/console/api/session", (c) => {
    const bad = requireConsoleHeader(c);
    if (bad) return fail(c, bad);
    const account = auth?.authenticate(readCookie(c.req.header("cookie"), SESSION_COOKIE));
    if (!account) return fail(c, new ApiError("UNAUTHORIZED", "not signed in"));
    c.header("Cache-Control", "no-store");
    return c.json({ account: account.name }, 200);
  });

  app.delete("/console/api/session", (c) => {
    const bad = requireConsoleHeader(c);
    if (bad) return fail(c, bad);
    auth?.signOut(readCookie(c.req.header("cookie"), SESSION_COOKIE));
    c.header("Set-Cookie", cookie(c, "", 0));
    return c.json({}, 200);
  });

  app.post("/console/api/pty-token", async (c) => {
    const bad = requireConsoleHeader(c);
    if (bad) return fail(c, bad);
    const sessionId = readCookie(c.req.header("cookie"), SESSION_COOKIE);
    const account = auth?.authenticate(sessionId);
    if (!auth || !sessionId || !account) return fail(c, new ApiError("UNAUTHORIZED", "not signed in"));
    const body = await jsonBody(c);
    if (typeof body.vmId !== "string" || body.vmId === "") return fail(c, new ApiError("VALIDATION_ERROR", "vmId is required"));
    const user = typeof body.user === "string" && body.user !== "" && body.user !== "root" ? body.user : undefined;
    if (user !== undefined && !LINUX_USER_RE.test(user)) return fail(c, new ApiError("VALIDATION_ERROR", "user must be a Linux user name"));
    const vm = await deps.svc.views.get(account, body.vmId); // VM_NOT_FOUND for another account's VM
    const t = auth.issueWsToken(sessionId, vm.id, user);
    if (!t) return fail(c, new ApiError("UNAUTHORIZED", "not signed in"));
    c.header("Cache-Control", "no-store");
    return c.json({ token: t.token, expiresAt: new Date(t.expiresAt).toISOString() }, 200);
  });

  // Opening a preview host from the console: the console's cookie is host-only here and never
  // sent to a preview host, so the console hands over a one-time token in a redirect instead.
  // The first hop comes from another site (a link on a preview page), which a SameSite=Strict
  // cookie does not ride on: it answers a page that navigates again from this origin.
  app.get("/console/preview", async (c) => {
    const to = c.req.query("to") ?? "";
    let target: URL;
    try {
      target = new URL(to);
    } catch {
      return fail(c, new ApiError("VALIDATION_ERROR", "to must be a preview URL"));
    }
    const route = deps.preview?.router.route(target.host);
    if (!deps.preview || route?.kind !== "preview" || (target.protocol !== "http:" && target.protocol !== "https:")) return fail(c, new ApiError("VALIDATION_ERROR", "to must be a preview URL of this server"));
    c.header("Cache-Control", "no-store");
    if (c.req.query("go") !== "1") {
      const again = `/console/preview?go=1&to=${encodeURIComponent(target.href)}`;
      return c.html(`<!doctype html><meta http-equiv="refresh" content="0;url=${again.replace(/&/g, "&amp;").replace(/"/g, "&quot;")}"><title>Opening the preview</title>`);
    }
    const account = auth?.authenticate(readCookie(c.req.header("cookie"), SESSION_COOKIE));
    if (!account) return c.redirect("/console/", 302);
    const row = deps.svc.rows.ownedVm(account, route.vmId); // VM_NOT_FOUND for another account's VM
    target.searchParams.set(HANDOFF_PARAM, deps.preview.handoff(row.account_id, row.id, route.port));
    return c.redirect(target.href, 302);
  });

  app.get("/console", (c) => c.redirect("/console/", 301));
  app.get("/console/*", async (c) => {
    if (c.req.path.startsWith("/console/api/")) return fail(c, new ApiError("NOT_FOUND", `no route ${c.req.method} ${c.req.path}`));
    const root = consoleDir();
    let rel: string;
    try {
      rel = decodeURIComponent(c.req.path.slice("/console/".length));
    } catch {
      return fail(c, new ApiError("BAD_REQUEST", "malformed path"));
    }
    if (rel === "" || rel.endsWith("/")) rel += "index.html";
    const file = path.resolve(root, rel);
    if (!file.startsWith(root + path.sep) || rel.includes("\0")) return fail(c, new ApiError("NOT_FOUND", "no such file"));
    let data: Buffer;
    try {
      data = await fs.readFile(file);
    } catch {
      if (rel === "index.html") return fail(c, new ApiError("NOT_FOUND", "the console is not built: run `npm run build` at the repository root"));
      return fail(c, new ApiError("NOT_FOUND", "no such file"));
    }
    const headers: Record<string, string> = {
      "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream",
      "Content-Security-Policy": CSP,
      "X-Content-Type-Options": "nosniff",
      "X-Frame-Options": "DENY",
      "Referrer-Policy": "no-referrer",
      // Vite names assets by content hash; the page itself must always be fresh.
      "Cache-Control": rel.startsWith("assets/") ? "public, max-age=31536000, immutable" : "no-store",
    };
    return new Response(new Uint8Array(data), { status: 200, headers });
  });
}

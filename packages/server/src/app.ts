/**
 * The Hono application: auth, body limit, latency metrics, error rendering, every route and the
 * OpenAPI document. WebSocket routes are served by the node server's `upgrade` handler
 * (ws/upgrade.ts) and only documented here.
 * @module
 */
import type { IncomingMessage } from "node:http";
import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import type { AppEnv, Deps } from "./context.js";
import { ApiError, toApiError, type ApiErrorCode } from "./errors.js";
import { OPENAPI_DESCRIPTION, registerWsMessages } from "./openapi-doc.js";
import { ROUTES } from "./routes/index.js";
import { CONSOLE_HEADER, readCookie, SESSION_COOKIE } from "./console/auth.js";
import { isConsolePath } from "./console/routes.js";
import { RAW_FILES_PATH } from "./routes/vm-files-raw.js";
import { isV5StreamedBody, V5_ROUTES, v5BadRequestCode } from "./routes/v5/index.js";
import { IDENTITY_TOKEN_HEADER, identityTokenRefusal } from "./routes/v5/unsupported.js";

/** Routes anyone may call: health checks and the API description. */
const PUBLIC_PATHS = new Set(["/healthz", "/openapi.json"]);

/** The route's own code for invalid input, so the client throws the matching typed error. */
export function badRequestCode(method: string, path: string): ApiErrorCode {
  const v5 = v5BadRequestCode(method, path);
  if (v5) return v5;
  if (method === "POST" && path.replace(/\/+$/, "") === "/v1/vms") return "CREATE_VM_BAD_REQUEST";
  if (/^\/v1\/vms\/[^/]+\/files\//.test(path)) return "FILES_BAD_REQUEST";
  return "VALIDATION_ERROR";
}

export function renderError(c: Context, err: ApiError): Response {
  return c.json(err.body(), err.status as 400);
}

/** Reads the bearer token from `Authorization: Bearer <key>`. */
export function bearer(header: string | undefined): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  return m?.[1];
}

export function createApp(deps: Deps): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>({
    defaultHook: (result, c) => {
      if (result.success) return;
      const detail = result.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; ");
      return renderError(c, new ApiError(badRequestCode(c.req.method, c.req.path), `invalid request: ${detail}`));
    },
  });

  app.use("*", async (c, next) => {
    const started = performance.now();
    await next();
    // An answer given before the request's body was read (401, 404, 413, 415, …): the rest of the
    // body is read and dropped first, within limits, else the answer closes the connection.
    // Otherwise a keep-alive client sends its next request on the connection while
    // @hono/node-server drains the old body, and that drain gives up after 500 ms by closing the
    // socket under the next request: a hang-up with no answer (found by the API fuzzer). Closing
    // at once instead would cut the client off mid-body (EPIPE) before it reads the answer.
    const incoming = c.env?.incoming;
    if (incoming && !incoming.complete && !(await drainBody(incoming, deps.limits.maxBodyBytes, deps.limits.unreadBodyDrainMs))) {
      c.res.headers.set("connection", "close");
    }
    deps.metrics.httpDuration.observe({ method: c.req.method, route: c.req.routePath, status: String(c.res.status) }, (performance.now() - started) / 1000);
  });

  // A browser opening the server's root URL lands in the web console; API clients (no text/html
  // in Accept) get the JSON they always got.
  app.use("*", async (c, next) => {
    if (c.req.path === "/" && (c.req.method === "GET" || c.req.method === "HEAD") && /\btext\/html\b/i.test(c.req.header("accept") ?? "")) return c.redirect("/console/", 302);
    return next();
  });

  app.use("*", async (c, next) => {
    if (PUBLIC_PATHS.has(c.req.path) || isConsolePath(c.req.path)) return next(); // the console authenticates itself
    const key = bearer(c.req.header("authorization"));
    // Without a key: the web console's session cookie, only with its CSRF header.
    const consoleSession = !key && c.req.header(CONSOLE_HEADER) === "1" ? readCookie(c.req.header("cookie"), SESSION_COOKIE) : undefined;
    const account = key ? deps.keys.authenticate(key) : deps.console?.authenticate(consoleSession);
    if (!account) {
      if (!key && c.req.header(IDENTITY_TOKEN_HEADER) !== undefined) return renderError(c, identityTokenRefusal());
      const message = key ? "invalid or revoked API key" : "missing API key: send Authorization: Bearer <key> (create one with `capsule keys create`)";
      return renderError(c, new ApiError("UNAUTHORIZED", message));
    }
    c.set("account", account);
    return next();
  });

  const tooLarge = (c: Context) => renderError(c, new ApiError(badRequestCode(c.req.method, c.req.path), `request body over the limit of ${deps.limits.maxBodyBytes} bytes`, 413));
  const limitBody = bodyLimit({ maxSize: deps.limits.maxBodyBytes, onError: tooLarge });
  // Raw file uploads (v1 files-raw, v5 fs/write and upload chunks) stream to the guest: the VM's disk is their only limit.
  app.use("*", async (c, next) => {
    if (RAW_FILES_PATH.test(c.req.path) || isV5StreamedBody(c.req.path)) return next();
    // What bodyLimit decides from a Content-Length, decided without it: bodyLimit looks at the
    // body first, which makes @hono/node-server build a web Request and stream for every call.
    const length = c.req.header("content-length");
    if (length !== undefined && c.req.header("transfer-encoding") === undefined && c.req.method !== "GET" && c.req.method !== "HEAD") {
      return parseInt(length || "0", 10) > deps.limits.maxBodyBytes ? tooLarge(c) : next();
    }
    return limitBody(c, next);
  });

  for (const register of ROUTES) register(app, deps);
  for (const register of V5_ROUTES) register(app, deps);

  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: { title: "Capsule API", version: "0.1.0", description: OPENAPI_DESCRIPTION },
  });
  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", { type: "http", scheme: "bearer" });
  registerWsMessages(app);

  app.notFound((c) => renderError(c, new ApiError("NOT_FOUND", `no route ${c.req.method} ${c.req.path}`)));
  app.onError((err, c) => {
    const code = badRequestCode(c.req.method, c.req.path);
    const api = err instanceof HTTPException && err.status < 500 ? new ApiError(code, err.message, err.status) : toApiError(err, code);
    // Capsule's own failures are errors; a 503 is the guest's or the host's state (a hostile guest
    // can cause any number of them), logged without a stack so no VM can flood the log.
    if (api.code === "INTERNAL_ERROR") deps.log.error({ err, path: c.req.path }, "request failed");
    else if (api.status >= 500) deps.log.info({ code: api.code, reason: api.extra.reason, path: c.req.path }, "request refused: service unavailable");
    return renderError(c, api);
  });
  return app;
}

/**
 * Reads and drops the rest of a request body: true once it ended, false (and the reading stops)
 * past `maxBytes` (or a declared length over it), after `ms`, or on an error.
 */
function drainBody(incoming: IncomingMessage, maxBytes: number, ms: number): Promise<boolean> {
  if (Number(incoming.headers["content-length"] ?? 0) > maxBytes) return Promise.resolve(false);
  return new Promise((resolve) => {
    let bytes = 0;
    const done = (ended: boolean) => {
      clearTimeout(timer);
      incoming.off("data", onData).off("end", onEnd).off("error", onError).off("close", onError);
      if (!ended) incoming.pause();
      resolve(ended);
    };
    const onData = (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > maxBytes) done(false);
    };
    const onEnd = () => done(true);
    const onError = () => done(incoming.complete);
    const timer = setTimeout(() => done(false), ms);
    incoming.on("data", onData).on("end", onEnd).on("error", onError).on("close", onError);
    incoming.resume();
  });
}

/**
 * The node server's `upgrade` handler: authenticates (Authorization: Bearer), checks ownership,
 * opens the guest side (PTY open/attach, or a process) and only then completes the handshake, so
 * every refusal is a plain HTTP answer with a `{code, message}` body and the right status.
 */
import type { IncomingMessage } from "node:http";
import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket } from "ws";
import { bearer } from "../app.js";
import { LINUX_USER_HEADER, type Deps } from "../context.js";
import { ApiError, toApiError } from "../errors.js";
import type { Account } from "../keys.js";
import { findSession, SESSION_ID_RE } from "../pty-sessions.js";
import { bridgeExec } from "./exec-stream.js";
import { bridgePty } from "./pty.js";

const LINUX_USER_RE = /^[a-z_][a-z0-9_-]{0,31}\$?$/;

interface Bridge {
  bind: (ws: WebSocket) => void;
  abort: () => void;
}

export function createUpgradeHandler(deps: Deps): { handle: (req: IncomingMessage, socket: Duplex, head: Buffer) => void; wss: WebSocketServer } {
  // Frames up to 16 MiB (stdin chunks); compression off: terminal bytes are small and latency matters.
  const wss = new WebSocketServer({ noServer: true, maxPayload: 16 * 1024 * 1024, perMessageDeflate: false });

  const handle = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on("error", () => undefined); // a client that vanishes mid-handshake is not a server error
    prepare(deps, req).then(
      ({ bridge, kind, release }) => {
        // The guest side and the activity hold end with the socket, whatever ends it: ws refuses a
        // malformed handshake (no Sec-WebSocket-Key, ...) by destroying the socket without a callback.
        let bound = false;
        const abandon = () => {
          if (bound) return;
          bridge.abort();
          release();
        };
        if (socket.destroyed) return abandon();
        socket.once("close", abandon);
        wss.handleUpgrade(req, socket, head, (ws) => {
          bound = true;
          socket.off("close", abandon);
          deps.metrics.wsSessions.inc({ kind });
          ws.on("close", () => {
            deps.metrics.wsSessions.dec({ kind });
            release();
          });
          ws.on("error", (err) => deps.log.debug({ err }, "websocket error"));
          bridge.bind(ws);
        });
      },
      (err: unknown) => reject(socket, toApiError(err)),
    );
  };
  return { handle, wss };
}

async function prepare(deps: Deps, req: IncomingMessage): Promise<{ bridge: Bridge; kind: "pty" | "exec"; release: () => void }> {
  const url = new URL(req.url ?? "/", "http://localhost");
  const key = bearer(req.headers.authorization);
  // A browser cannot send headers: the web console passes a single-use PTY token instead, bound to
  // its session, one VM and one Linux user (console/auth.ts). Only for the PTY routes.
  const viaToken = !key && url.searchParams.has("token") ? consoleToken(deps, url) : undefined;
  const account = key ? deps.keys.authenticate(key) : viaToken?.account;
  if (!account) throw new ApiError("UNAUTHORIZED", key ? "invalid or revoked API key" : viaToken === null ? "invalid, used or expired console token" : "missing API key: send Authorization: Bearer <key>");
  const userHeader = viaToken ? viaToken.user : req.headers[LINUX_USER_HEADER];
  const user = typeof userHeader === "string" && userHeader !== "" ? userHeader : undefined;
  if (user !== undefined && !LINUX_USER_RE.test(user)) throw new ApiError("VALIDATION_ERROR", `${LINUX_USER_HEADER} must be a Linux user name`);

  const seg = url.pathname.split("/").map((s) => safeDecode(s));
  // ["", "v1", "vms", id, ...rest]
  if (seg[1] !== "v1" || seg[2] !== "vms" || !seg[3]) throw new ApiError("NOT_FOUND", `no WebSocket route ${url.pathname}`);
  const vmId = seg[3];
  const rest = seg.slice(4).join("/");
  if (rest === "pty") return { ...(await openPty(deps, account, vmId, url, user)), kind: "pty" };
  if (seg[4] === "pty" && seg[5] === "sessions" && seg[6] !== undefined && seg.length === 7) {
    return { ...(await attachPty(deps, account, vmId, seg[6], url, user)), kind: "pty" };
  }
  if (rest === "exec-stream") return { ...(await execStream(deps, account, vmId, url, user)), kind: "exec" };
  throw new ApiError("NOT_FOUND", `no WebSocket route ${url.pathname}`);
}

/** The account and Linux user of a console PTY token, or null when it is not valid for this URL. */
function consoleToken(deps: Deps, url: URL): { account: Account; user: string | undefined } | null {
  const m = /^\/v1\/vms\/([^/]+)\/pty(?:\/sessions\/[^/]+)?$/.exec(url.pathname);
  const vmId = m?.[1] !== undefined ? safeDecode(m[1]) : undefined;
  return (vmId !== undefined && deps.console?.consumeWsToken(url.searchParams.get("token"), vmId)) || null;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new ApiError("BAD_REQUEST", "malformed percent-encoding in the URL");
  }
}

function size(url: URL, name: "cols" | "rows", dflt: number): number {
  const raw = url.searchParams.get(name);
  if (raw === null || raw === "") return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new ApiError("VALIDATION_ERROR", `${name} must be an integer from 1 to 10000, got ${JSON.stringify(raw)}`);
  return n;
}

async function openPty(deps: Deps, account: Account, vmId: string, url: URL, user: string | undefined): Promise<{ bridge: Bridge; release: () => void }> {
  const cols = size(url, "cols", 80);
  const rows = size(url, "rows", 24);
  const sessionId = url.searchParams.get("sessionId");
  if (sessionId) {
    if (!SESSION_ID_RE.test(sessionId)) throw new ApiError("INVALID_SESSION_ID", "session id must match [a-zA-Z0-9._-]{1,64}");
    throw new ApiError("INVALID_SESSION_ID", "choosing a session id is not supported by Capsule yet; omit sessionId and use the id from sessionInfo");
  }
  const exec = url.searchParams.get("exec");
  const pty = await deps.svc.gateway.open(account, vmId, {}, (_vm, guest) => guest.ptyOpen({ cols, rows, ...(user ? { user } : {}), ...(exec ? { command: ["/bin/sh", "-c", exec] } : {}) }));
  return { bridge: bridgePty(pty.value, { sessionInfo: pty.value.session.sessionId, log: deps.log }), release: pty.release };
}

async function attachPty(deps: Deps, account: Account, vmId: string, sessionId: string, url: URL, user: string | undefined): Promise<{ bridge: Bridge; release: () => void }> {
  const cols = size(url, "cols", 80);
  const rows = size(url, "rows", 24);
  const pty = await deps.svc.gateway.open(account, vmId, {}, async (_vm, guest) => {
    await findSession(guest, sessionId, user);
    return guest.ptyAttach(sessionId, { cols, rows, ...(user ? { user } : {}) });
  });
  return { bridge: bridgePty(pty.value, { log: deps.log }), release: pty.release };
}

async function execStream(deps: Deps, account: Account, vmId: string, url: URL, user: string | undefined): Promise<{ bridge: Bridge; release: () => void }> {
  const command = url.searchParams.get("command");
  if (!command) throw new ApiError("VALIDATION_ERROR", "query parameter `command` is required");
  const cwd = url.searchParams.get("cwd") ?? undefined;
  if (cwd !== undefined && !cwd.startsWith("/")) throw new ApiError("VALIDATION_ERROR", "cwd must be an absolute path");
  const t = url.searchParams.get("timeoutMs");
  const timeoutMs = t ? Number(t) : undefined;
  if (timeoutMs !== undefined && (!Number.isInteger(timeoutMs) || timeoutMs < 1)) throw new ApiError("VALIDATION_ERROR", "timeoutMs must be a positive integer");
  const proc = await deps.svc.gateway.open(account, vmId, {}, (_vm, guest) => guest.spawn({ command, ...(user ? { user } : {}), ...(cwd ? { cwd } : {}), ...(timeoutMs ? { timeoutMs } : {}) }));
  return { bridge: bridgeExec(proc.value, { onEnd: (outcome) => deps.metrics.execs.inc({ kind: "stream", outcome }) }), release: proc.release };
}

/** Answers the upgrade request with a plain HTTP error and closes the socket. */
function reject(socket: Duplex, err: ApiError): void {
  if (socket.destroyed) return;
  const body = JSON.stringify(err.body());
  socket.end(
    `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? "Error"}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

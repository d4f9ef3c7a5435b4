/**
 * The node server's `upgrade` handler. In order:
 *
 * 1. the handshake itself is checked (GET, `Upgrade: websocket`, a valid `Sec-WebSocket-Key`,
 *    version 13 or 8) — a broken one is answered 400 and nothing else happens;
 * 2. authentication (Authorization: Bearer, or a console PTY token), input, ownership, the VM
 *    woken and held, and for an attach the session and its user: every refusal is still a plain
 *    HTTP answer with a `{code, message}` body and the right status;
 * 3. the handshake completes, and only then does anything start in the guest (PTY open/attach,
 *    or the exec-stream's process once its `start` message came). A failure from here on is an
 *    exec-stream `error` frame, or a PTY close 1011 with the message as reason.
 *
 * A socket that closes before or during any step releases what it held; open sockets are watched
 * by `OpenSockets` (heartbeats, revoked keys, console sign-out).
 */
import type { IncomingMessage } from "node:http";
import { STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { LINUX_USER_RE, WS_CLOSE } from "@capsule/contract/wire";
import { ExecStart, type ExecServerMessage } from "@capsule/contract/ws";
import { WebSocketServer, type RawData, type WebSocket } from "ws";
import { bearer } from "../app.js";
import { LINUX_USER_HEADER, type Deps } from "../context.js";
import { ApiError, toApiError } from "../errors.js";
import { keyIdOf, type Account } from "../keys.js";
import { findSession, SESSION_ID_RE } from "../pty-sessions.js";
import type { QuotaTicket } from "../quotas.js";
import { bridgeExec } from "./exec-stream.js";
import { holdVm, size } from "./hold.js";
import { OpenSockets, type SocketOwner } from "./open-sockets.js";
import { bridgePty } from "./pty.js";
import { preparePtyV5 } from "./pty-v5.js";

/** As `ws` checks it (RFC 6455 §4.2.1: 16 random bytes, base64). */
const WS_KEY_RE = /^[+/0-9A-Za-z]{22}==$/;

/** How long an exec-stream waits for its `start` message before it gives up (close 1011). */
export const EXEC_START_TIMEOUT_MS = 10_000;

interface Bridge {
  bind: (ws: WebSocket) => void;
  abort: () => void;
}

/** Step 2's result: the VM held (nothing started in it yet) and how to start the guest side. */
interface Prepared {
  kind: "pty" | "exec";
  /** The /v5 PTY protocol: failures after the handshake are `error` frames there too. */
  v5?: boolean;
  owner: SocketOwner;
  release: () => void;
  /** Starts the guest side for the upgraded socket; `held` holds the client's messages so far. */
  start: (ws: WebSocket, held: HeldMessages) => Promise<Bridge>;
}

/** Why a request is not a valid WebSocket handshake (the checks `ws` makes), or undefined. */
export function handshakeProblem(req: Pick<IncomingMessage, "method" | "headers">): string | undefined {
  if (req.method !== "GET") return "a WebSocket upgrade must be a GET request";
  const upgrade = req.headers.upgrade;
  if (upgrade === undefined || upgrade.toLowerCase() !== "websocket") return "the Upgrade header must be websocket";
  const key = req.headers["sec-websocket-key"];
  if (key === undefined || !WS_KEY_RE.test(key)) return "missing or invalid Sec-WebSocket-Key header";
  const version = Number(req.headers["sec-websocket-version"]);
  if (version !== 13 && version !== 8) return "missing or unsupported Sec-WebSocket-Version header (13)";
  return undefined;
}

export function createUpgradeHandler(deps: Deps): { handle: (req: IncomingMessage, socket: Duplex, head: Buffer) => void; wss: WebSocketServer; sockets: OpenSockets } {
  // Frames up to 16 MiB (stdin chunks); compression off: terminal bytes are small and latency matters.
  const wss = new WebSocketServer({ noServer: true, maxPayload: 16 * 1024 * 1024, perMessageDeflate: false });
  const sockets = new OpenSockets(deps.keys, deps.console, { heartbeatMs: deps.limits.wsHeartbeatMs, authCheckMs: deps.limits.wsAuthCheckMs });

  const handle = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on("error", () => undefined); // a client that vanishes mid-handshake is not a server error
    const bad = handshakeProblem(req);
    if (bad) return reject(socket, new ApiError("BAD_REQUEST", bad));
    prepare(deps, req).then(
      (p) => {
        // Until the handshake completes, the hold ends with the socket, whatever ends it: ws
        // refuses what step 1 does not check (a bad subprotocol list, ...) by destroying it.
        let upgraded = false;
        const abandon = () => {
          if (!upgraded) p.release();
        };
        if (socket.destroyed) return abandon();
        socket.once("close", abandon);
        wss.handleUpgrade(req, socket, head, (ws) => {
          upgraded = true;
          socket.off("close", abandon);
          deps.metrics.wsSessions.inc({ kind: p.kind });
          sockets.add(ws, p.owner, socket as Socket);
          ws.on("close", () => {
            deps.metrics.wsSessions.dec({ kind: p.kind });
            p.release();
          });
          ws.on("error", (err) => deps.log.debug({ err }, "websocket error"));
          const held = holdMessages(ws);
          p.start(ws, held).then(
            (bridge) => {
              // The client may have gone while the guest side started: end it now.
              if (ws.readyState !== ws.OPEN) return bridge.abort();
              bridge.bind(ws);
              held.replay();
            },
            (err: unknown) => failSocket(ws, p.kind === "exec" || p.v5 === true, toApiError(err)),
          );
        });
      },
      (err: unknown) => reject(socket, toApiError(err)),
    );
  };
  return { handle, wss, sockets };
}

/**
 * Holds the client's messages from the handshake until the bridge is bound, then replays them in
 * order. `first()` takes the first one (the exec-stream's `start`); from then on the socket is not
 * read (what is held is bounded by one socket read) until `replay()`.
 */
interface HeldMessages {
  first: (timeoutMs: number) => Promise<{ data: Buffer; isBinary: boolean }>;
  replay: () => void;
}

function holdMessages(ws: WebSocket): HeldMessages {
  const held: Array<[Buffer, boolean]> = [];
  let taker: ((m: [Buffer, boolean]) => void) | undefined;
  const on = (data: RawData, isBinary: boolean) => {
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
    if (taker) {
      const t = taker;
      taker = undefined;
      ws.pause();
      t([buf, isBinary]);
    } else held.push([buf, isBinary]);
  };
  ws.on("message", on);
  return {
    first: (timeoutMs) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new ApiError("VALIDATION_ERROR", `no start message within ${timeoutMs} ms`)), timeoutMs);
        const closed = () => {
          clearTimeout(timer);
          reject(new ApiError("VALIDATION_ERROR", "the socket closed before its start message"));
        };
        ws.once("close", closed);
        taker = ([data, isBinary]) => {
          clearTimeout(timer);
          ws.off("close", closed);
          resolve({ data, isBinary });
        };
      }),
    replay: () => {
      ws.off("message", on);
      // Resume first: the socket reads again only from the next tick, after the held messages,
      // and stdin flow control may pause it again while they are handled.
      if (ws.isPaused) ws.resume();
      for (const [data, isBinary] of held.splice(0)) ws.emit("message", data, isBinary);
    },
  };
}

/** A failure after the handshake: an error frame (exec-stream, /v5 PTY), then a close with the reason. */
function failSocket(ws: WebSocket, errorFrame: boolean, err: ApiError): void {
  if (ws.readyState !== ws.OPEN) return;
  if (errorFrame) ws.send(JSON.stringify({ type: "error", code: err.code, message: err.message } satisfies ExecServerMessage));
  ws.close(WS_CLOSE.FAILED, Buffer.from(err.message).subarray(0, 120).toString("utf8").replace(/\uFFFD$/, ""));
}

async function prepare(deps: Deps, req: IncomingMessage): Promise<Prepared> {
  const url = new URL(req.url ?? "/", "http://localhost");
  const key = bearer(req.headers.authorization);
  // A browser cannot send headers: the web console passes a single-use PTY token instead, bound to
  // its session, one VM and one Linux user (console/auth.ts). Only for the PTY routes.
  const viaToken = !key && url.searchParams.has("token") ? consoleToken(deps, url) : undefined;
  const account = key ? deps.keys.authenticate(key) : viaToken?.account;
  if (!account) throw new ApiError("UNAUTHORIZED", key ? "invalid or revoked API key" : viaToken === null ? "invalid, used or expired console token" : "missing API key: send Authorization: Bearer <key>");
  const keyId = key ? keyIdOf(key) : viaToken?.keyId;
  const owner: SocketOwner = { ...(keyId ? { keyId } : {}), ...(viaToken ? { consoleSession: viaToken.sessionRef } : {}) };
  const userHeader = viaToken ? viaToken.user : req.headers[LINUX_USER_HEADER];
  const user = typeof userHeader === "string" && userHeader !== "" ? userHeader : undefined;
  if (user !== undefined && !LINUX_USER_RE.test(user)) throw new ApiError("VALIDATION_ERROR", `${LINUX_USER_HEADER} must be a Linux user name`);

  const seg = url.pathname.split("/").map((s) => safeDecode(s));
  // ["", "v1" | "v5", "vms", id, ...rest]
  if ((seg[1] !== "v1" && seg[1] !== "v5") || seg[2] !== "vms" || !seg[3]) throw new ApiError("NOT_FOUND", `no WebSocket route ${url.pathname}`);
  const vmId = seg[3];
  const rest = seg.slice(4).join("/");
  const quotas = deps.svc.quotas;
  if (seg[1] === "v5") {
    // freestyle 0.2 sends the user in the query; the v1 header has no meaning here.
    const selector = seg[4] === "pty" && seg[5] === "sessions" && seg.length === 7 ? seg[6] : undefined;
    if (rest !== "pty" && !selector) throw new ApiError("NOT_FOUND", `no WebSocket route ${url.pathname}`);
    return { ...(await slotted(quotas.acquirePty(account), () => preparePtyV5(deps, account, vmId, url, selector))), kind: "pty", v5: true, owner };
  }
  if (rest === "pty") return { ...(await slotted(quotas.acquirePty(account), () => openPty(deps, account, vmId, url, user))), kind: "pty", owner };
  if (seg[4] === "pty" && seg[5] === "sessions" && seg[6] !== undefined && seg.length === 7) {
    const sessionId = seg[6];
    return { ...(await slotted(quotas.acquirePty(account), () => attachPty(deps, account, vmId, sessionId, url, user))), kind: "pty", owner };
  }
  if (rest === "exec-stream") return { ...(await slotted(quotas.acquireExec(account), () => execStream(deps, account, vmId, url, user))), kind: "exec", owner };
  throw new ApiError("NOT_FOUND", `no WebSocket route ${url.pathname}`);
}

/** The account's PTY or exec slot (quotas.ts, 429 over the cap) lasts as long as the hold, and is freed if preparing fails. */
async function slotted<T extends { release: () => void }>(slot: QuotaTicket, prep: () => Promise<T>): Promise<T> {
  try {
    const p = await prep();
    return {
      ...p,
      release: () => {
        p.release();
        slot.release();
      },
    };
  } catch (err) {
    slot.release();
    throw err;
  }
}

/** The account and Linux user of a console PTY token, or null when it is not valid for this URL. */
function consoleToken(deps: Deps, url: URL): { account: Account; user: string | undefined; sessionRef: string; keyId: string } | null {
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

async function openPty(deps: Deps, account: Account, vmId: string, url: URL, user: string | undefined): Promise<Omit<Prepared, "kind" | "owner">> {
  const cols = size(url, "cols", 80);
  const rows = size(url, "rows", 24);
  const sessionId = url.searchParams.get("sessionId");
  if (sessionId) {
    if (!SESSION_ID_RE.test(sessionId)) throw new ApiError("INVALID_SESSION_ID", "session id must match [a-zA-Z0-9._-]{1,64}");
    throw new ApiError("INVALID_SESSION_ID", "choosing a session id is not supported by Capsule yet; omit sessionId and use the id from sessionInfo");
  }
  const exec = url.searchParams.get("exec");
  const { guest, release } = await holdVm(deps, account, vmId);
  return {
    release,
    start: async (ws) => {
      ws.pause(); // frames that come while the session opens wait in the socket
      const pty = await guest.ptyOpen({ cols, rows, ...(user ? { user } : {}), ...(exec ? { command: ["/bin/sh", "-c", exec] } : {}) });
      return bridgePty(pty, { sessionInfo: { type: "sessionInfo", sessionId: pty.session.sessionId }, log: deps.log });
    },
  };
}

async function attachPty(deps: Deps, account: Account, vmId: string, sessionId: string, url: URL, user: string | undefined): Promise<Omit<Prepared, "kind" | "owner">> {
  const cols = size(url, "cols", 80);
  const rows = size(url, "rows", 24);
  const { guest, release } = await holdVm(deps, account, vmId, async (g) => void (await findSession(g, sessionId, user)));
  return {
    release,
    start: async (ws) => {
      ws.pause();
      const att = await guest.ptyAttach(sessionId, { cols, rows, ...(user ? { user } : {}) });
      return bridgePty(att, { log: deps.log });
    },
  };
}

/**
 * The exec-stream: what to run comes in the client's first message (`start`), so that env values
 * never travel in the URL. The old query form (`?command=&cwd=&timeoutMs=`, no env) still works
 * for older SDKs: the process then starts right after the handshake.
 */
async function execStream(deps: Deps, account: Account, vmId: string, url: URL, user: string | undefined): Promise<Omit<Prepared, "kind" | "owner">> {
  const legacy = url.searchParams.get("command") !== null ? legacyStart(url) : undefined;
  const { guest, release } = await holdVm(deps, account, vmId);
  return {
    release,
    start: async (ws, held) => {
      const s = legacy ?? (await startMessage(held));
      if (!legacy) ws.pause();
      const runAs = s.user ?? user;
      const proc = await guest.spawn({ command: s.command, ...(runAs ? { user: runAs } : {}), ...(s.cwd ? { cwd: s.cwd } : {}), ...(s.env ? { env: s.env } : {}), ...(s.timeoutMs ? { timeoutMs: s.timeoutMs } : {}) });
      return bridgeExec(proc, { onEnd: (outcome) => deps.metrics.execs.inc({ kind: "stream", outcome }) });
    },
  };
}

async function startMessage(held: HeldMessages): Promise<ExecStart> {
  const { data, isBinary } = await held.first(EXEC_START_TIMEOUT_MS);
  const bad = (why: string) => new ApiError("VALIDATION_ERROR", `the first message must be {"type":"start","command",...}: ${why}`);
  if (isBinary) throw bad("got a binary frame");
  let raw: unknown;
  try {
    raw = JSON.parse(data.toString("utf8"));
  } catch {
    throw bad("not JSON");
  }
  const r = ExecStart.safeParse(raw);
  if (!r.success) throw bad(r.error.issues.map((i) => `${i.path.join(".") || "message"}: ${i.message}`).join("; "));
  return r.data;
}

function legacyStart(url: URL): ExecStart {
  const command = url.searchParams.get("command");
  if (!command) throw new ApiError("VALIDATION_ERROR", "query parameter `command` must not be empty");
  const cwd = url.searchParams.get("cwd") ?? undefined;
  if (cwd !== undefined && !cwd.startsWith("/")) throw new ApiError("VALIDATION_ERROR", "cwd must be an absolute path");
  const t = url.searchParams.get("timeoutMs");
  const timeoutMs = t ? Number(t) : undefined;
  if (timeoutMs !== undefined && (!Number.isInteger(timeoutMs) || timeoutMs < 1)) throw new ApiError("VALIDATION_ERROR", "timeoutMs must be a positive integer");
  return { type: "start", command, ...(cwd ? { cwd } : {}), ...(timeoutMs ? { timeoutMs } : {}) };
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

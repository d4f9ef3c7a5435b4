/**
 * Every open PTY and exec-stream socket, with what authorised it, so that
 *
 * - a peer that stops answering pings is dropped (a ping every `heartbeatMs`; none answered since
 *   the last one: terminated). While the server itself stopped reading the socket (stdin flow
 *   control) pongs cannot be read, so that check waits; TCP keep-alive still finds a dead peer;
 * - a revoked key closes its sockets within `authCheckMs`: the keys of open sockets are re-read
 *   from the database that often, which also sees `capsule keys revoke` run by another process;
 * - signing out of the console closes that session's terminals at once (and the periodic check
 *   catches sessions that ended any other way).
 *
 * Closing ends the bridge (the exec is killed, the PTY detached) and releases the activity hold
 * through the socket's own close handlers. The timer runs only while sockets are open.
 * @module
 */
import type { Socket } from "node:net";
import { WS_CLOSE } from "@capsule/contract/wire";
import type { WebSocket } from "ws";
import type { ConsoleAuth } from "../console/auth.js";
import type { KeyStore } from "../keys.js";

/** What authorised a socket. */
export interface SocketOwner {
  /** The API key's id (console sockets too: the key the console session was made with). */
  keyId?: string;
  /** The console session, for sockets opened with a console PTY token. */
  consoleSession?: string;
}

export interface OpenSocketsOptions {
  heartbeatMs: number;
  authCheckMs: number;
}

/** After a policy close, a peer that does not finish the closing handshake is cut off after this long. */
const CLOSE_GRACE_MS = 1000;

export class OpenSockets {
  readonly #open = new Map<WebSocket, SocketOwner>();
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly keys: KeyStore,
    private readonly consoleAuth: ConsoleAuth | undefined,
    private readonly opts: OpenSocketsOptions,
  ) {
    consoleAuth?.onSessionEnd((ref) => {
      for (const [ws, o] of this.#open) if (o.consoleSession === ref) end(ws, "the console session ended");
    });
  }

  get size(): number {
    return this.#open.size;
  }

  add(ws: WebSocket, owner: SocketOwner, socket: Socket | undefined): void {
    this.#open.set(ws, owner);
    socket?.setKeepAlive(true, this.opts.heartbeatMs);
    let alive = true;
    ws.on("pong", () => (alive = true));
    const heartbeat = setInterval(() => {
      if (ws.isPaused) return; // not reading: a pong could not be seen
      if (!alive) return ws.terminate();
      alive = false;
      ws.ping();
    }, this.opts.heartbeatMs);
    heartbeat.unref();
    ws.once("close", () => {
      clearInterval(heartbeat);
      this.#open.delete(ws);
      if (this.#open.size === 0) this.#stop();
    });
    this.#timer ??= setInterval(() => {
      try {
        this.check();
      } catch {
        // the database closed under a server shutting down: its sockets are going anyway
      }
    }, this.opts.authCheckMs).unref();
  }

  /** Closes the sockets whose key was revoked or whose console session ended. */
  check(): void {
    const active = this.keys.activeKeyIds([...this.#open.values()].flatMap((o) => (o.keyId ? [o.keyId] : [])));
    for (const [ws, o] of this.#open) {
      if (o.keyId && !active.has(o.keyId)) end(ws, "the API key was revoked");
      else if (o.consoleSession && !this.consoleAuth?.sessionLive(o.consoleSession)) end(ws, "the console session ended");
    }
  }

  #stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

function end(ws: WebSocket, reason: string): void {
  if (ws.readyState === ws.CLOSED) return;
  if (ws.readyState === ws.OPEN) ws.close(WS_CLOSE.POLICY, reason);
  // A peer that does not answer the close (or a socket we stopped reading) is cut off.
  setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref();
}

/**
 * PTY terminals over the WebSocket protocol of the freestyle 0.1.x client: `vm.pty.open()`,
 * `attach()`, `list()`, `close()` and the session handle (`write`, `signal`, `resize`,
 * `detach`; callbacks `onData`, `onExit`, `onError`). Uses the `ws` package, so it runs on
 * Node 20 without `--experimental-websocket`. Reconnects automatically like the official client.
 * @module
 */
import type WebSocket from "ws";
import { CapsuleError, makeError } from "./errors.js";
import { seg, type Transport } from "./transport.js";
import type { PtySessionInfo } from "./types.js";
import type { PtyClientMessage } from "@capsule/contract/ws";

/** Automatic re-attach after a dropped connection. */
export interface ReconnectOptions {
  /** Default true. */
  enabled?: boolean;
  /** Attempts before giving up. Default 5. */
  maxAttempts?: number;
  /** First backoff, in milliseconds; doubles each attempt. Default 500. */
  baseDelayMs?: number;
  /** Longest backoff, in milliseconds. Default 8000. */
  maxDelayMs?: number;
}

/** Callbacks of a PTY session. */
export interface PtyListeners {
  /** Terminal output, raw bytes (escape sequences included). On attach, the scrollback comes first. */
  onData?: (bytes: Uint8Array) => void;
  /** The session's process ended; `exitCode` is 128+n for signal n (137 after SIGKILL). */
  onExit?: (exitCode: number | null) => void;
  /** A WebSocket error (the handle may reconnect). */
  onError?: (err: unknown) => void;
  /** The handle closed for good (detach, exit, or reconnect exhausted). */
  onClose?: (info: { code: number; reason: string }) => void;
  /** A reconnect attempt starts (1-based). */
  onReconnecting?: (attempt: number, maxAttempts: number) => void;
  /** Re-attached after a dropped connection. */
  onReconnect?: () => void;
}

/** Options of `vm.pty.open()`. */
export interface PtyOpenOptions extends PtyListeners {
  /** Terminal width, in columns. Default 80. */
  cols?: number;
  /** Terminal height, in rows. Default 24. */
  rows?: number;
  /** Command line to run (through /bin/sh -c) instead of the user's login shell. */
  exec?: string;
  /** Re-attach when the connection drops. Default: on, 5 attempts, 0.5 s to 8 s backoff. */
  reconnect?: boolean | ReconnectOptions;
}

/** Options of `vm.pty.attach()`. */
export interface PtyAttachOptions extends PtyListeners {
  /** The session to attach to (from `open()` or `list()`). */
  sessionId: string;
  /** Terminal width, in columns. Default 80. */
  cols?: number;
  /** Terminal height, in rows. Default 24. */
  rows?: number;
  /** Re-attach when the connection drops. Default: on. */
  reconnect?: boolean | ReconnectOptions;
}

type State = "connecting" | "connected" | "reconnecting" | "closed";

/** One attached handle to a PTY session. Closing the handle (detach) keeps the session running. */
export class PtySession {
  /** The session id: pass it to `vm.pty.attach()` / `vm.pty.close()` later. */
  sessionId!: string;
  #ws: WebSocket | undefined;
  #state: State = "connecting";
  #exited = false;
  #detached = false;
  #pending: Array<string | Uint8Array> = [];
  #cols: number;
  #rows: number;
  readonly #listeners: PtyListeners;
  readonly #reconnect: Required<ReconnectOptions>;
  readonly #connect: (sessionId: string, cols: number, rows: number, onMessage: (d: Buffer, bin: boolean) => void) => Promise<WebSocket>;
  #onSessionInfo: ((id: string) => void) | undefined;

  /** @internal use `vm.pty.open()` / `vm.pty.attach()`. */
  constructor(args: {
    listeners: PtyListeners;
    cols: number;
    rows: number;
    reconnect: boolean | ReconnectOptions | undefined;
    connect: (sessionId: string, cols: number, rows: number, onMessage: (d: Buffer, bin: boolean) => void) => Promise<WebSocket>;
  }) {
    this.#listeners = args.listeners;
    this.#cols = args.cols;
    this.#rows = args.rows;
    const r = args.reconnect === false ? { enabled: false } : args.reconnect === true || args.reconnect === undefined ? {} : args.reconnect;
    this.#reconnect = { enabled: r.enabled ?? true, maxAttempts: r.maxAttempts ?? 5, baseDelayMs: r.baseDelayMs ?? 500, maxDelayMs: r.maxDelayMs ?? 8000 };
    this.#connect = args.connect;
  }

  /** True once the session's process has ended. */
  get exited(): boolean {
    return this.#exited;
  }

  /** Current terminal size. */
  get size(): { cols: number; rows: number } {
    return { cols: this.#cols, rows: this.#rows };
  }

  /** Sends keystrokes / bytes (a string is sent as UTF-8). Queued while reconnecting. Throws after detach or exit. */
  write(data: string | Uint8Array): void {
    this.#assertOpen();
    if (this.#state !== "connected" || !this.#ws) {
      this.#pending.push(data);
      return;
    }
    this.#ws.send(typeof data === "string" ? Buffer.from(data, "utf8") : data, { binary: true });
  }

  /** Resizes the terminal (TIOCSWINSZ in the VM). */
  resize({ cols, rows }: { cols: number; rows: number }): void {
    this.#assertOpen();
    this.#cols = cols;
    this.#rows = rows;
    if (this.#state === "connected") this.#ws?.send(JSON.stringify({ type: "resize", cols, rows } satisfies PtyClientMessage));
  }

  /** `SIGINT` writes Ctrl-C (0x03) so the foreground job gets it; `SIGKILL` kills the session (onExit 137). */
  signal(sig: "SIGINT" | "SIGKILL"): void {
    this.#assertOpen();
    if (this.#state === "connected") this.#ws?.send(JSON.stringify({ type: "signal", signal: sig } satisfies PtyClientMessage));
  }

  /** Closes this handle; the session keeps running in the VM and can be re-attached. */
  detach(): void {
    this.#detached = true;
    this.#state = "closed";
    try {
      this.#ws?.close();
    } catch {
      /* already closed */
    }
  }

  #assertOpen(): void {
    if (this.#state !== "closed") return;
    if (this.#detached) throw makeError("SESSION_CLOSED", `PTY handle was detached; session ${this.sessionId} may still be running`);
    if (this.#exited) throw makeError("SESSION_CLOSED", `PTY session ${this.sessionId} has exited`);
    throw makeError("SESSION_CLOSED", `PTY handle for session ${this.sessionId} is closed`);
  }

  /** @internal */
  handleMessage(data: Buffer, isBinary: boolean): void {
    if (isBinary) {
      this.#listeners.onData?.(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      return;
    }
    let msg: { type?: unknown; sessionId?: unknown; exitCode?: unknown };
    try {
      msg = JSON.parse(data.toString("utf8")) as typeof msg;
    } catch {
      return;
    }
    if (msg.type === "sessionInfo" && typeof msg.sessionId === "string") this.#onSessionInfo?.(msg.sessionId);
    else if (msg.type === "exited") {
      this.#exited = true;
      this.#listeners.onExit?.(typeof msg.exitCode === "number" ? msg.exitCode : null);
    }
  }

  /** @internal Connects; resolves once connected (and, for a new session, once sessionInfo arrived). */
  async start(connectFirst: (onMessage: (d: Buffer, bin: boolean) => void) => Promise<WebSocket>, knownSessionId?: string): Promise<this> {
    let gotInfo: (id: string) => void = () => undefined;
    const info = new Promise<string>((resolve) => (gotInfo = resolve));
    this.#onSessionInfo = (id) => {
      if (this.sessionId === undefined) this.sessionId = id;
      gotInfo(id);
    };
    if (knownSessionId !== undefined) this.sessionId = knownSessionId;
    const ws = await connectFirst((d, bin) => this.handleMessage(d, bin));
    this.#wire(ws);
    if (knownSessionId === undefined) {
      const closed = new Promise<never>((_r, reject) =>
        ws.once("close", (code: number) => reject(makeError("CONNECTION_LOST", `PTY WebSocket closed (code ${code}) before the server sent the session id`))),
      );
      await Promise.race([info, closed]);
    }
    this.#state = "connected";
    return this;
  }

  #wire(ws: WebSocket): void {
    this.#ws = ws;
    ws.on("error", (err) => this.#listeners.onError?.(err));
    ws.on("close", (code: number, reason: Buffer) => {
      if (ws !== this.#ws) return;
      this.#handleClose({ code, reason: reason.toString("utf8") });
    });
  }

  #handleClose(info: { code: number; reason: string }): void {
    if (this.#state === "connecting") return; // start() reports it
    if (this.#detached || this.#exited || this.#state === "closed" || !this.#reconnect.enabled) {
      this.#state = "closed";
      this.#listeners.onClose?.(info);
      return;
    }
    this.#state = "reconnecting";
    void this.#reconnectLoop(info);
  }

  async #reconnectLoop(first: { code: number; reason: string }): Promise<void> {
    for (let attempt = 1; attempt <= this.#reconnect.maxAttempts && this.#state === "reconnecting"; attempt++) {
      this.#listeners.onReconnecting?.(attempt, this.#reconnect.maxAttempts);
      await new Promise((r) => setTimeout(r, Math.min(this.#reconnect.baseDelayMs * 2 ** (attempt - 1), this.#reconnect.maxDelayMs)));
      if (this.#state !== "reconnecting") return;
      try {
        const ws = await this.#connect(this.sessionId, this.#cols, this.#rows, (d, bin) => this.handleMessage(d, bin));
        if (this.#state !== "reconnecting") {
          ws.close();
          return;
        }
        this.#wire(ws);
        this.#state = "connected";
        this.#listeners.onReconnect?.();
        ws.send(JSON.stringify({ type: "resize", cols: this.#cols, rows: this.#rows } satisfies PtyClientMessage));
        for (const d of this.#pending.splice(0)) this.write(d);
        return;
      } catch (err) {
        if (err instanceof CapsuleError && (err.code === "SESSION_NOT_FOUND" || err.code === "SESSION_USER_MISMATCH")) break;
      }
    }
    this.#state = "closed";
    this.#listeners.onClose?.(first);
  }
}

/** `vm.pty`: terminals in the VM, as the handle's Linux user. */
export class VmPty {
  /** @internal */
  constructor(
    private readonly t: Transport,
    private readonly vmId: string,
    private readonly user: string | undefined,
  ) {}

  #attachWs(sessionId: string, cols: number, rows: number, onMessage: (d: Buffer, bin: boolean) => void): Promise<WebSocket> {
    return this.t.websocket(`/v1/vms/${seg(this.vmId)}/pty/sessions/${seg(sessionId)}`, { cols, rows }, this.user, onMessage);
  }

  /** Opens a new terminal session (the user's login shell, or `exec`). Resolves once the server named the session. */
  async open(options: PtyOpenOptions = {}): Promise<PtySession> {
    const cols = options.cols ?? 80;
    const rows = options.rows ?? 24;
    const session = new PtySession({ listeners: options, cols, rows, reconnect: options.reconnect, connect: (id, c, r, m) => this.#attachWs(id, c, r, m) });
    return session.start((m) => this.t.websocket(`/v1/vms/${seg(this.vmId)}/pty`, { cols, rows, exec: options.exec || undefined }, this.user, m));
  }

  /** Attaches to a running session; its scrollback arrives first on `onData`. */
  async attach(options: PtyAttachOptions): Promise<PtySession> {
    const cols = options.cols ?? 80;
    const rows = options.rows ?? 24;
    const session = new PtySession({ listeners: options, cols, rows, reconnect: options.reconnect, connect: (id, c, r, m) => this.#attachWs(id, c, r, m) });
    return session.start((m) => this.#attachWs(options.sessionId, cols, rows, m), options.sessionId);
  }

  /** Lists this user's sessions: running, suspended and recently exited. */
  async list(): Promise<{ sessions: PtySessionInfo[] }> {
    return this.t.json("GET", `/v1/vms/${seg(this.vmId)}/pty/sessions`, { user: this.user });
  }

  /** Kills a session and forgets it. */
  async close({ sessionId }: { sessionId: string }): Promise<{ sessionId: string; exitCode: number | null }> {
    return this.t.json("DELETE", `/v1/vms/${seg(this.vmId)}/pty/sessions/${seg(sessionId)}`, { user: this.user });
  }
}

import { randomUUID } from "node:crypto";
import { FrameType, MAX_FRAME_PAYLOAD, parsePtyControl, signalName, type ExitReply, type Frame, type PtyControl, type PtySessionInfo } from "@capsule/agent-protocol";
import type { IEvent, IPty } from "node-pty";
import { ByteRing } from "./byte-ring.js";
import type { Conn } from "./conn.js";
import { badRequest } from "./errors.js";
import { helperCommand, killGroup } from "./launch.js";
import { log } from "./log.js";
import type { UserInfo } from "./users.js";

type NodePty = typeof import("node-pty");
let nodePty: Promise<NodePty> | undefined;

/**
 * node-pty, loaded at the first terminal rather than at start-up: its native addon costs about
 * 25 ms of the agent's boot inside gVisor, and most VMs never open a terminal.
 */
export function loadNodePty(): Promise<NodePty> {
  return (nodePty ??= import("node-pty"));
}

/** One frame, so an attach replays it whole. */
const SCROLLBACK_BYTES = Math.min(1024 * 1024, MAX_FRAME_PAYLOAD);
/** How long a hang-up gets to end the session before `terminate` escalates to SIGKILL. */
const HANGUP_GRACE_MS = 1_000;
const TERMINATE_WAIT_MS = 2_000;
/** Longest a new session holds early input while waiting for the program's first output. */
const INPUT_HOLD_MS = 1_500;
/** A `replaceOnExit` command that exits sooner than this after its start is left dead (it keeps dying at startup). */
const RESPAWN_MIN_RUN_MS = 1_000;

export interface PtySpawnOptions {
  cols: number;
  rows: number;
  cwd: string;
  env: Record<string, string>;
}

/** What the API knows a session by besides its id: its per-agent number, name, and respawn rule. */
export interface PtyNaming {
  number: number;
  slug?: string;
  replaceOnExit?: boolean;
}

interface Client {
  conn: Conn;
  cols?: number;
  rows?: number;
}

function exitSignal(signal: number | undefined): string | null {
  if (!signal) return null;
  return signalName(signal) ?? String(signal);
}

/**
 * A terminal session that outlives connections: any number of clients attach, all see the
 * output, and the session runs on when they detach. Output is paused while any client's socket
 * is full, so a flood (`cat` of a big file) waits for the slowest reader instead of piling up.
 */
export class PtySession {
  readonly id = randomUUID();
  readonly createdAt = new Date();
  readonly user: string;
  readonly number: number;
  /** Its name until a new session takes it (only an exited session loses it). */
  slug: string | undefined;
  readonly #replaceOnExit: boolean;
  readonly #spawnArgs: { file: string; args: string[]; options: PtySpawnOptions };
  readonly #nodePty: NodePty;
  #pty!: IPty;
  #startedAt = 0;
  #terminating = false;
  readonly #scrollback = new ByteRing(SCROLLBACK_BYTES);
  readonly #clients = new Set<Client>();
  readonly #blocked = new Set<Client>();
  readonly #exitWaiters: Array<() => void> = [];
  #cols: number;
  #rows: number;
  #exit: ExitReply | undefined;
  /**
   * Input typed before the program first wrote anything, held back until it does (or for at
   * most INPUT_HOLD_MS). Until a shell has started readline, the terminal itself echoes input,
   * and gVisor's line discipline echoes control bytes raw where Linux shows `^^`: a client that
   * types its first line at once (the seed's Agent SDK bridge types a 0x1E sentinel) would see
   * that byte in the echo. Once the prompt is out, readline echoes and shows control bytes as
   * `^X`, as on Linux.
   */
  #held: Buffer[] | undefined = [];

  constructor(
    pty: NodePty,
    user: UserInfo,
    readonly command: string[],
    options: PtySpawnOptions,
    naming: PtyNaming,
    private readonly onExit: (session: PtySession) => void,
  ) {
    this.user = user.name;
    this.number = naming.number;
    this.slug = naming.slug;
    this.#replaceOnExit = naming.replaceOnExit === true;
    this.#nodePty = pty;
    // capsule-spawn sets the user's groups; node-pty's own uid/gid options would keep root's.
    this.#spawnArgs = { ...helperCommand(user, command), options };
    this.#cols = options.cols;
    this.#rows = options.rows;
    this.#spawn();
    setTimeout(() => this.#releaseInput(), INPUT_HOLD_MS).unref();
  }

  /** Starts the command on a new terminal (again, for `replaceOnExit`, at the session's current size). */
  #spawn(): void {
    const { file, args, options } = this.#spawnArgs;
    const pty = this.#nodePty.spawn(file, args, { name: options.env.TERM, cols: this.#cols, rows: this.#rows, cwd: options.cwd, env: options.env, encoding: null });
    this.#pty = pty;
    this.#startedAt = Date.now();
    // With `encoding: null` node-pty hands out raw Buffers; its typings only know strings.
    (pty.onData as unknown as IEvent<Buffer>)((data) => {
      this.#releaseInput();
      this.#output(data);
    });
    pty.onExit(({ exitCode, signal }) => {
      if (this.#replaceOnExit && !this.#terminating && Date.now() - this.#startedAt >= RESPAWN_MIN_RUN_MS) {
        try {
          return this.#spawn();
        } catch {
          // cannot start it again: the session ends with this exit
        }
      }
      this.#exited(exitCode, signal);
      this.onExit(this);
    });
  }

  get pid(): number {
    return this.#pty.pid;
  }

  get running(): boolean {
    return this.#exit === undefined;
  }

  info(): PtySessionInfo {
    return {
      sessionId: this.id,
      number: this.number,
      ...(this.slug !== undefined ? { slug: this.slug } : {}),
      replaceOnExit: this.#replaceOnExit,
      user: this.user,
      command: this.command,
      cols: this.#cols,
      rows: this.#rows,
      pid: this.pid,
      running: this.running,
      exitCode: this.#exit?.code ?? null,
      createdAt: this.createdAt.toISOString(),
      attached: this.#clients.size,
    };
  }

  /** Replies `session` (`created` as given), replays the scrollback, then streams live output to `conn`. */
  attach(conn: Conn, size: { cols?: number; rows?: number }, created?: boolean): void {
    const client: Client = { conn, ...size };
    const reply = { type: "session" as const, session: this.info(), ...(created !== undefined ? { created } : {}) };
    if (this.#exit) {
      conn.sendJson(reply);
      conn.sendJson(this.#exit);
      conn.finish();
      return;
    }
    this.#clients.add(client);
    conn.sendJson(reply);
    const scrollback = this.#scrollback.snapshot();
    if (scrollback.length > 0) conn.send(FrameType.Stdout, scrollback);
    this.#applySize();
    conn.onClose(() => this.#detach(client));
    conn.onFrames((frame) => this.#input(client, frame));
  }

  /** Hangs up on the session, escalating to SIGKILL; resolves once it exited or gave up waiting. */
  terminate(): Promise<void> {
    if (!this.running) return Promise.resolve();
    this.#terminating = true;
    killGroup(this.pid, "SIGHUP");
    const escalate = setTimeout(() => {
      if (this.running) killGroup(this.pid, "SIGKILL");
    }, HANGUP_GRACE_MS);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(escalate);
        clearTimeout(giveUp);
        resolve();
      };
      const giveUp = setTimeout(done, TERMINATE_WAIT_MS);
      this.#exitWaiters.push(done);
    });
  }

  #input(client: Client, frame: Frame): void {
    if (!this.running) return;
    if (frame.type === FrameType.Stdin) {
      if (this.#held) this.#held.push(Buffer.from(frame.payload));
      else this.#pty.write(frame.payload);
    } else if (frame.type === FrameType.Json) this.#control(client, parsePtyControl(frame.payload));
    else if (frame.type !== FrameType.Eof) throw badRequest(`unexpected frame type ${frame.type} on a PTY`);
  }

  #releaseInput(): void {
    const held = this.#held;
    if (!held) return;
    this.#held = undefined;
    if (held.length > 0 && this.running) this.#pty.write(Buffer.concat(held));
  }

  #control(client: Client, control: PtyControl): void {
    if (control.type === "resize") {
      client.cols = control.cols;
      client.rows = control.rows;
      this.#applySize();
    } else if (control.signal === "SIGINT") {
      // Through the line discipline, so the terminal's foreground job gets it, as with a real ^C.
      this.#pty.write("\x03");
    } else {
      killGroup(this.pid, control.signal);
    }
  }

  /** Like tmux: the terminal is as big as the smallest attached client. */
  #applySize(): void {
    const sized = [...this.#clients].filter((c): c is Required<Client> => c.cols !== undefined && c.rows !== undefined);
    if (sized.length === 0 || !this.running) return;
    const cols = Math.min(...sized.map((c) => c.cols));
    const rows = Math.min(...sized.map((c) => c.rows));
    if (cols === this.#cols && rows === this.#rows) return;
    try {
      this.#pty.resize(cols, rows);
    } catch (err) {
      // Either the terminal closed under us (the exit handler is about to run) or the ioctl
      // failed on a live terminal: that one is worth a line in the agent's log.
      if (this.running) log(`pty ${this.number}: resize to ${cols}x${rows} failed: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    this.#cols = cols;
    this.#rows = rows;
  }

  #output(data: Buffer): void {
    this.#scrollback.push(data);
    for (const client of this.#clients) {
      if (client.conn.send(FrameType.Stdout, data) || this.#blocked.has(client)) continue;
      if (this.#blocked.size === 0) this.#pty.pause();
      this.#blocked.add(client);
      client.conn.onDrain(() => this.#unblock(client));
    }
  }

  #unblock(client: Client): void {
    if (this.#blocked.delete(client) && this.#blocked.size === 0 && this.running) this.#pty.resume();
  }

  #detach(client: Client): void {
    this.#clients.delete(client);
    this.#unblock(client);
    this.#applySize();
  }

  #exited(exitCode: number, signal: number | undefined): void {
    const name = exitSignal(signal);
    const exit: ExitReply = { type: "exit", code: name ? null : exitCode, signal: name };
    this.#exit = exit;
    this.#scrollback.clear();
    for (const { conn } of this.#clients) {
      conn.sendJson(exit);
      conn.finish();
    }
    this.#clients.clear();
    this.#blocked.clear();
    for (const resolve of this.#exitWaiters.splice(0)) resolve();
  }
}

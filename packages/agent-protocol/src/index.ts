/**
 * The wire protocol between the host (engine) and the guest agent that runs inside every VM.
 *
 * Transport: a unix stream socket the agent listens on inside the VM (`/.capsule-run/agent.sock`,
 * a root-only directory bind-mounted from the host). The host opens **one connection per
 * operation**; closing the connection ends the operation (for a PTY attach, it detaches). One
 * connection per operation gives each stream its own kernel backpressure, so a 64 MiB upload or
 * a chatty process never buffers unboundedly in either process.
 *
 * Every byte on a connection is a frame: `[type: u8][length: u32 big-endian][payload]`.
 * The first frame the host sends is a JSON frame holding a {@link Request}. After that:
 *
 * | op            | host → agent                                  | agent → host                                                  |
 * |---------------|-----------------------------------------------|---------------------------------------------------------------|
 * | `version`     | –                                             | JSON {@link VersionReply}, close                              |
 * | `exec`        | `Stdin` chunks, `Eof`, JSON {@link ExecControl}| JSON `started`, `Stdout`/`Stderr` chunks, JSON `exit`, close |
 * | `pty.open`    | `Stdin` (keystrokes), JSON {@link PtyControl} | JSON `session`, `Stdout` (terminal bytes), JSON `exit`, close |
 * | `pty.attach`  | as `pty.open`                                 | JSON `session`, scrollback then live `Stdout`, JSON `exit`    |
 * | `fs.read`     | –                                             | JSON `stat`, `Stdout` chunks, `Eof`, close                    |
 * | `fs.write`    | `Stdin` chunks, `Eof`                         | JSON `ok` (after the atomic rename), close                    |
 * | other ops     | –                                             | one JSON reply, close                                         |
 *
 * Any failure is a JSON {@link ErrorReply} (`type: "error"`), after which the agent closes.
 * @module
 */

/** Bumped whenever the protocol changes in a way the host must know about. */
export const AGENT_PROTOCOL_VERSION = 1;

/** Path of the agent's socket inside the VM. The directory is root-only (mode 0700). */
export const AGENT_SOCKET_DIR_IN_VM = "/.capsule-run";
export const AGENT_SOCKET_NAME = "agent.sock";

export const FrameType = {
  Json: 1,
  Stdin: 2,
  Stdout: 3,
  Stderr: 4,
  /** End of a byte stream (stdin EOF from the host, end of file data from the agent). */
  Eof: 5,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** Largest payload of one frame. Senders split larger data into several frames. */
export const MAX_FRAME_PAYLOAD = 1024 * 1024;
/** Largest JSON frame a reader accepts. */
export const MAX_JSON_PAYLOAD = 4 * 1024 * 1024;

export interface Frame {
  type: FrameType;
  payload: Buffer;
}

/** Encodes one frame header + payload. */
export function encodeFrame(type: FrameType, payload: Buffer | Uint8Array | string): Buffer {
  const body = typeof payload === "string" ? Buffer.from(payload, "utf8") : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  const header = Buffer.allocUnsafe(5);
  header.writeUInt8(type, 0);
  header.writeUInt32BE(body.length, 1);
  return Buffer.concat([header, body]);
}

export function encodeJson(value: unknown): Buffer {
  return encodeFrame(FrameType.Json, JSON.stringify(value));
}

/**
 * Incremental frame decoder: push chunks in, get whole frames out. Throws on a frame type it
 * does not know or a payload over the limits, because either means the peer is broken or hostile.
 * Chunks are kept as they came and each byte is copied at most once, when a frame spans chunks:
 * sockets deliver 64 KiB reads, and re-joining a buffer per read would copy a 1 MiB frame
 * about eight times over.
 */
export class FrameDecoder {
  #chunks: Buffer[] = [];
  #head = 0;
  #length = 0;

  push(chunk: Buffer): Frame[] {
    if (chunk.length > 0) {
      this.#chunks.push(chunk);
      this.#length += chunk.length;
    }
    const frames: Frame[] = [];
    while (this.#length >= 5) {
      const header = this.#peek(5);
      const type = header.readUInt8(0);
      const len = header.readUInt32BE(1);
      if (type < FrameType.Json || type > FrameType.Eof) throw new Error(`unknown frame type ${type}`);
      const limit = type === FrameType.Json ? MAX_JSON_PAYLOAD : MAX_FRAME_PAYLOAD;
      if (len > limit) throw new Error(`frame of ${len} bytes exceeds the ${limit} byte limit`);
      if (this.#length < 5 + len) break;
      frames.push({ type: type as FrameType, payload: this.#take(5 + len).subarray(5) });
    }
    return frames;
  }

  /** Bytes received but not yet part of a whole frame. */
  get pending(): number {
    return this.#length;
  }

  /** The first `n` buffered bytes (n <= #length), left in place. */
  #peek(n: number): Buffer {
    const first = this.#chunks[this.#head] as Buffer;
    if (first.length >= n) return first.subarray(0, n);
    const out = Buffer.allocUnsafe(n);
    for (let i = this.#head, filled = 0; filled < n; i++) filled += (this.#chunks[i] as Buffer).copy(out, filled, 0, n - filled);
    return out;
  }

  /** Removes and returns the first `n` buffered bytes (n <= #length), copying only across chunks. */
  #take(n: number): Buffer {
    const first = this.#chunks[this.#head] as Buffer;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      this.#drop(first, n);
    } else {
      out = Buffer.allocUnsafe(n);
      for (let filled = 0; filled < n; ) {
        const chunk = this.#chunks[this.#head] as Buffer;
        const k = chunk.copy(out, filled, 0, n - filled);
        filled += k;
        this.#drop(chunk, k);
      }
    }
    this.#length -= n;
    return out;
  }

  #drop(chunk: Buffer, n: number): void {
    if (n < chunk.length) {
      this.#chunks[this.#head] = chunk.subarray(n);
      return;
    }
    this.#head++;
    // Drop spent chunks once they are at least half the array, so a stream that never drains
    // completely (a partial frame is nearly always pending) does not keep them all alive.
    if (this.#head * 2 >= this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
  }
}

/** Who a request acts as. Absent means root. */
export interface AsUser {
  /** Linux user name inside the VM; the agent resolves uid, gid, groups and HOME from /etc/passwd and /etc/group. */
  user?: string;
}

export interface ExecRequest extends AsUser {
  op: "exec";
  /** Run through `/bin/sh -c`. */
  command: string;
  cwd?: string;
  /** Added to (and overriding) the default environment. */
  env?: Record<string, string>;
  /** Kill the whole process group after this long. Absent or 0: no timeout. */
  timeoutMs?: number;
}

export interface PtyOpenRequest extends AsUser {
  op: "pty.open";
  /** argv; default: the user's login shell, interactive. */
  command?: string[];
  cols: number;
  rows: number;
  cwd?: string;
  env?: Record<string, string>;
  /** TERM for the session; default `xterm-256color`. */
  term?: string;
}

export interface PtyAttachRequest extends AsUser {
  op: "pty.attach";
  sessionId: string;
  cols?: number;
  rows?: number;
}

export interface PtyListRequest {
  op: "pty.list";
}

export interface PtyCloseRequest {
  op: "pty.close";
  sessionId: string;
}

export interface FsReadRequest extends AsUser {
  op: "fs.read";
  path: string;
  offset?: number;
  /** Bytes to read; absent: to the end. */
  length?: number;
}

export interface FsWriteRequest extends AsUser {
  op: "fs.write";
  path: string;
  /** Octal permission bits, e.g. 0o644. Default 0o644 (new files) or the existing file's mode. */
  mode?: number;
  /** Create missing parent directories. */
  mkdirs?: boolean;
}

export interface FsPathRequest extends AsUser {
  op: "fs.stat" | "fs.list" | "fs.exists";
  path: string;
}

export interface FsMkdirRequest extends AsUser {
  op: "fs.mkdir";
  path: string;
  recursive?: boolean;
  mode?: number;
}

export interface FsRemoveRequest extends AsUser {
  op: "fs.remove";
  path: string;
  recursive?: boolean;
}

export interface SimpleRequest {
  op: "version" | "sync";
}

export type Request =
  | ExecRequest
  | PtyOpenRequest
  | PtyAttachRequest
  | PtyListRequest
  | PtyCloseRequest
  | FsReadRequest
  | FsWriteRequest
  | FsPathRequest
  | FsMkdirRequest
  | FsRemoveRequest
  | SimpleRequest;

/** Host → agent control messages during an `exec`. */
export type ExecControl = { type: "signal"; signal: "SIGINT" | "SIGTERM" | "SIGKILL" | "SIGHUP" };

/** Host → agent control messages during a PTY attach. */
export type PtyControl =
  | { type: "resize"; cols: number; rows: number }
  | { type: "signal"; signal: "SIGINT" | "SIGTERM" | "SIGKILL" | "SIGHUP" };

export interface ErrorReply {
  type: "error";
  code: AgentErrorCode;
  message: string;
}

export type AgentErrorCode =
  | "BAD_REQUEST"
  | "USER_NOT_FOUND"
  | "FILE_NOT_FOUND"
  | "PERMISSION_DENIED"
  | "IS_A_DIRECTORY"
  | "NOT_A_DIRECTORY"
  | "ALREADY_EXISTS"
  | "DIRECTORY_NOT_EMPTY"
  | "SESSION_NOT_FOUND"
  | "SESSION_USER_MISMATCH"
  | "SPAWN_FAILED"
  | "INTERNAL";

export interface VersionReply {
  type: "version";
  version: string;
  protocol: number;
  pid: number;
}

export interface ExitReply {
  type: "exit";
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  signal: string | null;
  /** True when the agent killed the process group because `timeoutMs` passed. */
  timedOut?: boolean;
}

export type FileKind = "file" | "directory" | "symlink" | "other";

export interface StatInfo {
  kind: FileKind;
  size: number;
  /** Permission bits (e.g. 0o644). */
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
}

export interface DirEntry {
  name: string;
  kind: FileKind;
}

export interface PtySessionInfo {
  sessionId: string;
  user: string;
  command: string[];
  cols: number;
  rows: number;
  pid: number;
  running: boolean;
  exitCode: number | null;
  createdAt: string;
  /** Connections attached right now. */
  attached: number;
}

export type Reply =
  | ErrorReply
  | VersionReply
  | ExitReply
  | { type: "started"; pid: number }
  | { type: "session"; session: PtySessionInfo }
  | { type: "sessions"; sessions: PtySessionInfo[] }
  | { type: "closed"; sessionId: string; exitCode: number | null }
  | { type: "stat"; stat: StatInfo }
  | { type: "list"; entries: DirEntry[] }
  | { type: "exists"; exists: boolean }
  | { type: "ok"; size?: number };

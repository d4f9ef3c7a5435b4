import fs from "node:fs";
import net from "node:net";
import { EventEmitter } from "node:events";
import { PassThrough, Readable, Writable } from "node:stream";
import {
  FrameDecoder,
  FrameType,
  MAX_FRAME_PAYLOAD,
  encodeFrame,
  encodeJson,
  type Frame,
  type Reply,
  type Request,
} from "@capsule/agent-protocol";
import { EngineError, ErrorCode } from "../errors.js";

const O_PATH = 0o10000000;

/**
 * Opens a connection to the agent's socket without trusting the path: the socket's directory is
 * writable by root inside the VM, which could replace the socket with a symlink to some other
 * host socket (another VM's agent, say). We open the final component with O_PATH|O_NOFOLLOW,
 * check it is a socket, and connect through /proc/self/fd, so what we connect to is exactly the
 * inode we checked.
 */
function connectSafely(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    let fd: number;
    try {
      fd = fs.openSync(socketPath, O_PATH | fs.constants.O_NOFOLLOW);
    } catch (err) {
      reject(err);
      return;
    }
    try {
      if (!fs.fstatSync(fd).isSocket()) {
        fs.closeSync(fd);
        reject(new Error(`${socketPath} is not a socket`));
        return;
      }
    } catch (err) {
      fs.closeSync(fd);
      reject(err);
      return;
    }
    const sock = net.connect(`/proc/self/fd/${fd}`);
    const done = () => fs.closeSync(fd);
    sock.once("connect", () => {
      done();
      resolve(sock);
    });
    sock.once("error", (err) => {
      done();
      reject(err);
    });
  });
}

/**
 * One agent connection carrying one operation. Emits `json` (a {@link Reply}), `stdout`,
 * `stderr` and `eof` as frames arrive, and `close` once. Writes respect the socket's backpressure.
 */
export class AgentConn extends EventEmitter {
  readonly #sock: net.Socket;
  readonly #decoder = new FrameDecoder();
  #closed = false;

  constructor(sock: net.Socket) {
    super();
    this.#sock = sock;
    sock.on("data", (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = this.#decoder.push(chunk);
      } catch (err) {
        this.emit("protocolError", err);
        sock.destroy();
        return;
      }
      for (const f of frames) this.#dispatch(f);
    });
    sock.on("error", () => undefined); // surfaced through close
    sock.on("close", () => {
      this.#closed = true;
      this.emit("close");
    });
  }

  #dispatch(f: Frame): void {
    switch (f.type) {
      case FrameType.Json:
        this.emit("json", JSON.parse(f.payload.toString("utf8")) as Reply);
        break;
      case FrameType.Stdout:
        this.emit("stdout", f.payload);
        break;
      case FrameType.Stderr:
        this.emit("stderr", f.payload);
        break;
      case FrameType.Eof:
        this.emit("eof");
        break;
      default:
        break;
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  sendJson(value: unknown): boolean {
    if (this.#closed) return false;
    return this.#sock.write(encodeJson(value));
  }

  /** Sends data as Stdin frames; resolves when the socket can take more. */
  async sendData(data: Buffer): Promise<void> {
    for (let off = 0; off < data.length; off += MAX_FRAME_PAYLOAD) {
      if (this.#closed) throw new EngineError(ErrorCode.AgentUnavailable, "agent connection closed");
      const ok = this.#sock.write(encodeFrame(FrameType.Stdin, data.subarray(off, off + MAX_FRAME_PAYLOAD)));
      if (!ok) await new Promise<void>((r) => {
        const go = () => {
          this.#sock.off("close", go);
          this.#sock.off("drain", go);
          r();
        };
        this.#sock.once("drain", go);
        this.#sock.once("close", go);
      });
    }
  }

  sendEof(): void {
    if (!this.#closed) this.#sock.write(encodeFrame(FrameType.Eof, Buffer.alloc(0)));
  }

  pause(): void {
    this.#sock.pause();
  }
  resume(): void {
    this.#sock.resume();
  }

  close(): void {
    this.#sock.end();
    this.#sock.destroy();
  }
}

export function agentError(reply: Reply): EngineError | undefined {
  if (reply.type !== "error") return undefined;
  return new EngineError(ErrorCode.AgentError, reply.message, { agentCode: reply.code });
}

/** Talks to one VM's agent. Stateless: every call opens its own connection. */
export class AgentClient {
  constructor(readonly socketPath: string) {}

  async open(req: Request): Promise<AgentConn> {
    let sock: net.Socket;
    try {
      sock = await connectSafely(this.socketPath);
    } catch (err) {
      throw new EngineError(ErrorCode.AgentUnavailable, `cannot reach the VM's agent: ${(err as Error).message}`, { cause: err });
    }
    const conn = new AgentConn(sock);
    conn.sendJson(req);
    return conn;
  }

  /** For operations answered by one JSON reply. Rejects with the agent's error. */
  async call<T extends Reply["type"]>(req: Request, expect: T, timeoutMs = 30_000): Promise<Extract<Reply, { type: T }>> {
    const conn = await this.open(req);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        conn.close();
        reject(new EngineError(ErrorCode.AgentUnavailable, `agent did not answer ${req.op} within ${timeoutMs} ms`));
      }, timeoutMs);
      conn.once("json", (reply: Reply) => {
        clearTimeout(timer);
        conn.close();
        const err = agentError(reply);
        if (err) reject(err);
        else if (reply.type !== expect) reject(new EngineError(ErrorCode.Internal, `agent answered ${reply.type} to ${req.op}`));
        else resolve(reply as Extract<Reply, { type: T }>);
      });
      conn.once("close", () => {
        clearTimeout(timer);
        reject(new EngineError(ErrorCode.AgentUnavailable, `agent closed the connection during ${req.op}`));
      });
    });
  }

  /** Streams a file out of the VM. The first `stat` reply is awaited so errors reject here. */
  async readStream(req: Extract<Request, { op: "fs.read" }>): Promise<{ size: number; stream: Readable }> {
    const conn = await this.open(req);
    const out = new PassThrough({ highWaterMark: 4 * MAX_FRAME_PAYLOAD });
    return new Promise((resolve, reject) => {
      // "settled" = the promise is decided; "handedOut" = a caller holds `out` and must hear errors.
      let settled = false;
      let handedOut = false;
      conn.once("json", (reply: Reply) => {
        settled = true;
        const err = agentError(reply);
        if (err || reply.type !== "stat") {
          conn.close();
          reject(err ?? new EngineError(ErrorCode.Internal, `agent answered ${reply.type} to fs.read`));
          return;
        }
        handedOut = true;
        resolve({ size: reply.stat.size, stream: out });
        conn.on("json", (r: Reply) => {
          const e = agentError(r);
          if (e) out.destroy(e);
        });
      });
      conn.on("stdout", (chunk: Buffer) => {
        if (!out.write(chunk)) {
          conn.pause();
          out.once("drain", () => conn.resume());
        }
      });
      conn.once("eof", () => {
        out.end();
        conn.close();
      });
      conn.once("close", () => {
        if (!settled) reject(new EngineError(ErrorCode.AgentUnavailable, "agent closed the connection during fs.read"));
        else if (handedOut && !out.writableEnded) out.destroy(new EngineError(ErrorCode.AgentUnavailable, "agent connection closed mid-file"));
      });
      out.on("close", () => {
        if (!conn.closed) conn.close();
      });
    });
  }

  /** Streams `source` into a file in the VM; resolves after the agent's atomic rename. */
  async writeStream(req: Extract<Request, { op: "fs.write" }>, source: Readable | Buffer): Promise<number> {
    const conn = await this.open(req);
    const reply = new Promise<number>((resolve, reject) => {
      conn.once("json", (r: Reply) => {
        conn.close();
        const err = agentError(r);
        if (err) reject(err);
        else resolve(r.type === "ok" ? (r.size ?? 0) : 0);
      });
      conn.once("close", () => reject(new EngineError(ErrorCode.AgentUnavailable, "agent closed the connection during fs.write")));
    });
    reply.catch(() => undefined); // observed below; avoid an unhandled rejection while still sending
    try {
      if (Buffer.isBuffer(source)) await conn.sendData(source);
      else for await (const chunk of source) await conn.sendData(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
      conn.sendEof();
    } catch (err) {
      conn.close();
      // If the agent already refused (permission denied, say), its reason beats "connection closed".
      const agentReason = await Promise.race([reply.then(() => undefined, (e: unknown) => e), new Promise((r) => setTimeout(r, 50))]);
      throw agentReason ?? err;
    }
    return reply;
  }
}

/** A Writable that forwards to an agent connection as Stdin frames (for spawn's stdin). */
export function stdinWritable(conn: AgentConn): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      conn.sendData(chunk).then(() => cb(), cb);
    },
    final(cb) {
      conn.sendEof();
      cb();
    },
  });
}

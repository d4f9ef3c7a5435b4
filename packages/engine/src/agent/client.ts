import fs from "node:fs";
import net from "node:net";
import { EventEmitter } from "node:events";
import { finished, PassThrough, Readable, Writable } from "node:stream";
import {
  AGENT_PROTOCOL_VERSION,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameType,
  MAX_FRAME_PAYLOAD,
  ProtocolError,
  encodeFrame,
  encodeJson,
  parseJson,
  parseReply,
  writeFrameHeader,
  type Frame,
  type Reply,
  type Request,
  type VersionReply,
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
function connectSafely(socketPath: string, timeoutMs: number): Promise<net.Socket> {
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
    let fdOpen = true;
    const closeFd = () => {
      if (fdOpen) fs.closeSync(fd);
      fdOpen = false;
    };
    const timer = setTimeout(() => {
      closeFd();
      sock.destroy();
      reject(new EngineError(ErrorCode.AgentTimeout, `the VM's agent did not accept a connection within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      closeFd();
    };
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
 * How long the host waits on a guest. Every wait has one: a connect, the first reply of every
 * operation (absolute), a frame the agent began and did not finish (inactivity, counted only
 * while we are reading), and a command's own `timeoutMs` (a backstop past the agent's timer).
 */
export const AGENT_DEADLINES = {
  connectMs: 10_000,
  replyMs: 30_000,
  stalledFrameMs: 10_000,
  execGraceMs: 10_000,
  /** tcp.connect's answer: the agent's own connect limit (5 s) and some slack. */
  tunnelReplyMs: 8_000,
} as const;

/**
 * Upload bytes held for the agent's socket, beyond what its kernel buffer took, before the
 * upload's source is paused: two frames, so the agent never waits for the host to refill.
 */
const UPLOAD_WINDOW = 2 * MAX_FRAME_PAYLOAD;

/** The largest reply to tcp.connect: `ok`, or an error with a short message. */
const MAX_TUNNEL_REPLY_BYTES = 4096;

/** An AGENT_PROTOCOL_ERROR: what the guest sent is not the protocol. */
export function protocolError(message: string, cause?: unknown): EngineError {
  return new EngineError(ErrorCode.AgentProtocolError, `the VM's agent broke the protocol: ${message}`, cause === undefined ? undefined : { cause });
}

function timeoutError(message: string): EngineError {
  return new EngineError(ErrorCode.AgentTimeout, message);
}

/**
 * One agent connection carrying one operation. Emits `json` (a validated {@link Reply}),
 * `stdout`, `stderr` and `eof` as frames arrive, and `close` once. Writes respect the socket's
 * backpressure. Whatever the guest sends, nothing escapes this class as an exception: an invalid
 * frame, bad JSON, a wrong shape or type, a missed deadline (or a listener of ours that throws)
 * ends this one connection, and {@link closeError} then says why.
 */
export class AgentConn extends EventEmitter {
  readonly #sock: net.Socket;
  // Data frames in pieces as they arrive (views of the socket's reads): a file or a command's
  // output moves on without each 1 MiB frame being joined into a buffer of its own first.
  readonly #decoder = new FrameDecoder({ streamData: true });
  #closed = false;
  #paused = false;
  #failure: EngineError | undefined;
  #stallTimer: NodeJS.Timeout | undefined;
  readonly #deadlines = new Set<NodeJS.Timeout>();

  constructor(sock: net.Socket) {
    super();
    this.#sock = sock;
    sock.on("data", (chunk: Buffer) => this.#receive(chunk));
    sock.on("error", () => undefined); // surfaced through close
    sock.on("close", () => {
      this.#closed = true;
      clearTimeout(this.#stallTimer);
      for (const t of this.#deadlines) clearTimeout(t);
      this.#deadlines.clear();
      if (!this.#failure && this.#decoder.pending > 0) this.#failure = protocolError(`the connection ended in the middle of a frame (${this.#decoder.pending} bytes pending)`);
      try {
        this.emit("close");
      } catch (err) {
        // The last-resort guard for the end of a connection: a waiter's bug must not end the host.
        process.emitWarning(`an agent connection's close handler threw: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`, "CapsuleAgentWarning");
      }
    });
  }

  #receive(chunk: Buffer): void {
    if (this.#failure) return;
    try {
      for (const f of this.#decoder.push(chunk)) {
        this.#dispatch(f);
        if (this.#failure) return;
      }
      this.#watchStall();
    } catch (err) {
      // The last-resort guard: a bad frame, or anything a listener throws, ends this operation only.
      if (err instanceof ProtocolError) this.fail(protocolError(err.message, err));
      else this.fail(err instanceof EngineError ? err : new EngineError(ErrorCode.Internal, `handling the agent's reply failed: ${(err as Error)?.message ?? String(err)}`, { cause: err }));
    }
  }

  #dispatch(f: Frame): void {
    switch (f.type) {
      case FrameType.Json:
        this.emit("json", parseReply(parseJson(f.payload, "a reply")));
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
        throw new ProtocolError(`frame type ${f.type} goes from host to agent only`);
    }
  }

  /** A frame begun and not finished must be finished soon; counted only while we read. */
  #watchStall(): void {
    clearTimeout(this.#stallTimer);
    this.#stallTimer = undefined;
    if (this.#paused || this.#closed || this.#decoder.pending === 0) return;
    this.#stallTimer = setTimeout(() => {
      this.fail(timeoutError(`the VM's agent began a frame and sent nothing more for ${AGENT_DEADLINES.stalledFrameMs} ms (${this.#decoder.pending} bytes pending)`));
    }, AGENT_DEADLINES.stalledFrameMs);
  }

  /**
   * Fails the connection with `message` (AGENT_TIMEOUT) unless the returned cancel runs within
   * `ms`. Used for the first reply of an operation and for a command's own timeout.
   */
  deadline(ms: number, message: string): () => void {
    if (this.#closed) return () => undefined;
    const timer = setTimeout(() => {
      this.#deadlines.delete(timer);
      this.fail(timeoutError(message));
    }, ms);
    this.#deadlines.add(timer);
    return () => {
      clearTimeout(timer);
      this.#deadlines.delete(timer);
    };
  }

  /** Ends the connection because of `err`; {@link closeError} reports it to every waiter. */
  fail(err: EngineError): void {
    if (this.#failure || this.#closed) return;
    this.#failure = err;
    this.#sock.destroy();
  }

  /** Why the connection ended early: a protocol error or a missed deadline, else "closed" with `message`. */
  closeError(message: string): EngineError {
    return this.#failure ?? new EngineError(ErrorCode.AgentUnavailable, message);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** True when the connection ended through {@link fail} (a protocol error or a missed deadline). */
  get failed(): boolean {
    return this.#failure !== undefined;
  }

  /** With `eof`, an Eof frame follows in the same write: the operation has no more input. */
  sendJson(value: unknown, opts: { eof?: boolean } = {}): boolean {
    if (this.#closed) return false;
    const frame = encodeJson(value);
    return this.#sock.write(opts.eof ? Buffer.concat([frame, encodeFrame(FrameType.Eof, Buffer.alloc(0))]) : frame);
  }

  /**
   * Sends data as Stdin frames; resolves when the socket can take more. With `drainMs`, an agent
   * that takes none of it for that long fails the connection (AGENT_TIMEOUT); without, a full
   * socket may wait for ever, as a process that does not read its stdin may.
   */
  async sendData(data: Buffer, drainMs?: number): Promise<void> {
    for (let off = 0; off < data.length; off += MAX_FRAME_PAYLOAD) {
      if (this.#closed) throw this.closeError("agent connection closed");
      const payload = data.subarray(off, off + MAX_FRAME_PAYLOAD);
      const ok = this.#writeFrame(FrameType.Stdin, [payload], payload.length);
      if (ok) continue;
      const cancel = drainMs === undefined ? undefined : this.deadline(drainMs, `the VM's agent took no data for ${drainMs} ms`);
      await new Promise<void>((r) => {
        const go = () => {
          this.#sock.off("close", go);
          this.#sock.off("drain", go);
          r();
        };
        this.#sock.once("drain", go);
        this.#sock.once("close", go);
      });
      cancel?.();
    }
  }

  /**
   * Sends `source` as Stdin frames, joining the chunks that arrive together (an HTTP body comes
   * as the TCP socket's reads, 64 KiB or less) into frames of up to {@link MAX_FRAME_PAYLOAD}:
   * every frame costs the agent a header and a piece to handle, inside the VM, whose CPU is what
   * an upload waits on. Chunks are not copied: a frame's header and its chunks go out in one
   * writev. At most one frame is gathered; a partial one goes out once the source has nothing
   * more at hand (after the event loop's current turn). Past {@link UPLOAD_WINDOW} bytes queued
   * for the socket the source is paused (an HTTP body's client with it) until half of them went
   * out, so the agent always has the next bytes at hand; with `drainMs`, an agent that takes
   * nothing for that long fails the connection (AGENT_TIMEOUT). Resolves at the source's end,
   * once its last frame is queued.
   */
  sendStream(source: Readable, drainMs?: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      let gathered = 0;
      let flushQueued = false;
      let cancelWait: (() => void) | undefined;
      let ended = false;
      let settled = false;
      const onClose = () => settle(this.closeError("agent connection closed"));
      const settle = (err?: unknown) => {
        if (settled) return;
        settled = true;
        cancelWait?.();
        source.off("data", onData);
        stopWatching();
        this.#sock.off("close", onClose);
        if (err === undefined) resolve();
        else reject(err);
      };
      /** A frame went out to the kernel: a paused source resumes once half the window is free. */
      const onWritten = () => {
        if (settled || !cancelWait || this.#sock.destroyed || this.#sock.writableLength > UPLOAD_WINDOW / 2) return;
        cancelWait();
        cancelWait = undefined;
        if (ended) flush();
        else source.resume();
      };
      const sendGathered = () => {
        while (gathered > 0) {
          const frame: Buffer[] = [];
          for (let left = Math.min(gathered, MAX_FRAME_PAYLOAD); left > 0; ) {
            const part = parts[0] as Buffer;
            if (part.length <= left) {
              frame.push(part);
              parts.shift();
              left -= part.length;
            } else {
              frame.push(part.subarray(0, left));
              parts[0] = part.subarray(left);
              left = 0;
            }
          }
          const bytes = frame.reduce((n, b) => n + b.length, 0);
          gathered -= bytes;
          this.#writeFrame(FrameType.Stdin, frame, bytes, onWritten);
        }
      };
      const flush = () => {
        flushQueued = false;
        if (cancelWait || settled) return;
        sendGathered();
        if (this.#sock.writableLength <= UPLOAD_WINDOW) {
          if (ended) settle();
          return;
        }
        source.pause();
        cancelWait = drainMs === undefined ? () => undefined : this.deadline(drainMs, `the VM's agent took no data for ${drainMs} ms`);
      };
      const onData = (chunk: Buffer | Uint8Array | string) => {
        const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
        parts.push(buf);
        gathered += buf.length;
        if (gathered >= MAX_FRAME_PAYLOAD) flush();
        else if (!flushQueued) {
          flushQueued = true;
          setImmediate(flush);
        }
      };
      const onEnd = () => {
        ended = true;
        if (!flushQueued) flush();
      };
      // finished() also reports a source that failed or was destroyed before we got here (a
      // metered body over its limit), and one destroyed without an error, which never ends.
      const stopWatching = finished(source, { writable: false }, (err) => (err ? settle(err) : onEnd()));
      if (this.#closed) return onClose();
      this.#sock.once("close", onClose);
      source.on("data", onData);
    });
  }

  /**
   * Header and payload go out in one writev: the payload (up to 1 MiB, in parts) is not copied to
   * join them. `onWritten` runs once the kernel has taken the frame (or the write failed).
   */
  #writeFrame(type: FrameType, parts: Buffer[], length: number, onWritten?: () => void): boolean {
    const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
    writeFrameHeader(header, type, length);
    this.#sock.cork();
    this.#sock.write(header);
    let ok = true;
    parts.forEach((part, i) => (ok = this.#sock.write(part, i === parts.length - 1 ? onWritten : undefined)));
    this.#sock.uncork();
    return ok;
  }

  sendEof(): void {
    if (!this.#closed) this.#sock.write(encodeFrame(FrameType.Eof, Buffer.alloc(0)));
  }

  pause(): void {
    this.#paused = true;
    this.#sock.pause();
    this.#watchStall();
  }
  resume(): void {
    this.#paused = false;
    this.#sock.resume();
    this.#watchStall();
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

/** Options of {@link AgentClient.open}. */
export interface OpenOpts {
  /**
   * Absolute deadline for the agent's first reply, from the request on. Default
   * {@link AGENT_DEADLINES.replyMs}; `false` when the caller arms its own (fs.write's reply comes
   * only after the upload).
   */
  replyMs?: number | false;
  /** The operation takes no input: Eof is sent with the request (one write, one wake-up of the agent). */
  eof?: boolean;
}

/** Talks to one VM's agent. Stateless: every call opens its own connection. */
export class AgentClient {
  constructor(readonly socketPath: string) {}

  /** A new connection to the agent's socket; AGENT_UNAVAILABLE when nothing answers there. */
  async #connect(): Promise<net.Socket> {
    try {
      return await connectSafely(this.socketPath, AGENT_DEADLINES.connectMs);
    } catch (err) {
      if (err instanceof EngineError) throw err;
      throw new EngineError(ErrorCode.AgentUnavailable, `cannot reach the VM's agent: ${(err as Error).message}`, { cause: err });
    }
  }

  async open(req: Request, opts: OpenOpts = {}): Promise<AgentConn> {
    const sock = await this.#connect();
    const conn = new AgentConn(sock);
    const replyMs = opts.replyMs ?? AGENT_DEADLINES.replyMs;
    if (replyMs !== false) {
      const cancel = conn.deadline(replyMs, `the VM's agent did not answer ${req.op} within ${replyMs} ms`);
      conn.once("json", cancel);
    }
    conn.sendJson(req, { eof: opts.eof ?? false });
    return conn;
  }

  /** For operations answered by one JSON reply. Rejects with the agent's error. */
  async call<T extends Reply["type"]>(req: Request, expect: T, timeoutMs: number = AGENT_DEADLINES.replyMs): Promise<Extract<Reply, { type: T }>> {
    const conn = await this.open(req, { replyMs: timeoutMs });
    return new Promise((resolve, reject) => {
      const onClose = () => reject(conn.closeError(`agent closed the connection during ${req.op}`));
      conn.once("close", onClose);
      conn.once("json", (reply: Reply) => {
        conn.off("close", onClose); // its close is no error now (and builds none)
        conn.close();
        const err = agentError(reply);
        if (err) reject(err);
        else if (reply.type !== expect) reject(protocolError(`it answered ${reply.type} to ${req.op}`));
        else resolve(reply as Extract<Reply, { type: T }>);
      });
    });
  }

  /**
   * The agent's version, checked: a protocol other than this host's is an AGENT_PROTOCOL_ERROR.
   * For boot and adoption, so a VM with an agent this host cannot talk to fails early and clearly.
   */
  async hello(timeoutMs: number = AGENT_DEADLINES.replyMs): Promise<VersionReply> {
    const reply = await this.call({ op: "version" }, "version", timeoutMs);
    if (reply.protocol < AGENT_PROTOCOL_VERSION) {
      throw new EngineError(ErrorCode.AgentOutdated, `the VM's agent speaks protocol ${reply.protocol}, older than this host's ${AGENT_PROTOCOL_VERSION}: restart the VM to give it the current agent`);
    }
    if (reply.protocol !== AGENT_PROTOCOL_VERSION) {
      throw new EngineError(ErrorCode.AgentProtocolError, `the VM's agent speaks protocol ${reply.protocol}, this host ${AGENT_PROTOCOL_VERSION}: restart the VM to give it the current agent`);
    }
    return reply;
  }

  /**
   * `ckpt.prepare`: resolves once the agent answered `ok` and closed its end, so that its
   * listener, every other host connection and this one are gone and runsc may save the VM. The
   * agent listens again once the protocol's `CKPT_RESUME_MARKER` appears in the VM's run dir, or after
   * `deafMs` on its own.
   */
  async prepareCheckpoint(deafMs?: number): Promise<void> {
    const conn = await this.open({ op: "ckpt.prepare", ...(deafMs === undefined ? {} : { deafMs }) }, { eof: true });
    return new Promise((resolve, reject) => {
      let answered = false;
      conn.once("json", (reply: Reply) => {
        const err = agentError(reply);
        if (err || reply.type !== "ok") {
          conn.close();
          reject(err ?? protocolError(`it answered ${reply.type} to ckpt.prepare`));
          return;
        }
        answered = true;
        conn.deadline(AGENT_DEADLINES.replyMs, `the VM's agent answered ckpt.prepare and did not close its end within ${AGENT_DEADLINES.replyMs} ms`);
      });
      conn.once("close", () => (answered && !conn.failed ? resolve() : reject(conn.closeError("agent closed the connection during ckpt.prepare"))));
    });
  }

  /**
   * `tcp.connect`: a raw TCP stream to a port of the VM's loopback, through the agent. Resolves
   * with the unix socket (paused, half-close allowed) once the agent answered `ok`; from then on
   * it carries the TCP bytes unframed. Rejects with the agent's refusal (agentCode
   * CONNECTION_REFUSED when nothing listens, CONNECT_TIMEOUT) or, when the agent sent no valid
   * reply within `replyMs`, AGENT_PROTOCOL_ERROR / AGENT_TIMEOUT.
   */
  async tunnel(port: number, replyMs: number = AGENT_DEADLINES.tunnelReplyMs): Promise<net.Socket> {
    const sock = await this.#connect();
    sock.write(encodeJson({ op: "tcp.connect", port } satisfies Request));
    return new Promise((resolve, reject) => {
      let buffered = Buffer.alloc(0);
      const settle = (err: EngineError | undefined) => {
        clearTimeout(timer);
        sock.off("data", onData).off("close", onClose);
        if (!err) return resolve(sock);
        sock.destroy();
        reject(err);
      };
      const timer = setTimeout(() => settle(timeoutError(`the VM's agent did not answer tcp.connect within ${replyMs} ms`)), replyMs);
      const onClose = () => settle(new EngineError(ErrorCode.AgentUnavailable, "the VM's agent closed the connection during tcp.connect"));
      const onData = (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        if (buffered.length < FRAME_HEADER_BYTES) return;
        const type = buffered.readUInt8(0);
        const length = buffered.readUInt32BE(1);
        if (type !== FrameType.Json || length > MAX_TUNNEL_REPLY_BYTES) return settle(protocolError(`it answered tcp.connect with a frame of type ${type} and ${length} bytes`));
        if (buffered.length < FRAME_HEADER_BYTES + length) return;
        let reply: Reply;
        try {
          reply = parseReply(parseJson(buffered.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length), "a reply"));
        } catch (err) {
          return settle(protocolError((err as Error).message, err));
        }
        const refused = agentError(reply);
        if (refused || reply.type !== "ok") return settle(refused ?? protocolError(`it answered ${reply.type} to tcp.connect`));
        // What followed the reply in the same read is the stream's first bytes.
        const rest = buffered.subarray(FRAME_HEADER_BYTES + length);
        sock.pause();
        if (rest.length > 0) sock.unshift(rest);
        sock.allowHalfOpen = true;
        settle(undefined);
      };
      sock.on("data", onData).on("close", onClose);
      sock.on("error", () => undefined); // surfaced through close; the caller adds its own once resolved
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
      let received = 0;
      let size = 0;
      let waitingForDrain = false;
      conn.once("json", (reply: Reply) => {
        settled = true;
        const err = agentError(reply);
        if (err || reply.type !== "stat") {
          conn.close();
          reject(err ?? protocolError(`it answered ${reply.type} to fs.read`));
          return;
        }
        handedOut = true;
        size = reply.stat.size;
        resolve({ size, stream: out });
        conn.on("json", (r: Reply) => {
          out.destroy(agentError(r) ?? protocolError(`it sent ${r.type} in the middle of a file`));
          conn.close();
        });
      });
      conn.on("stdout", (chunk: Buffer) => {
        if (!handedOut) return conn.fail(protocolError("file data came before the file's stat"));
        // Frames after the Eof in the same read (the agent fuzzer's find): the file has ended; writing
        // on would throw ERR_STREAM_WRITE_AFTER_END, a 500. The read keeps what came before the Eof.
        if (out.writableEnded) return conn.fail(protocolError("it sent file data after the file's end"));
        received += chunk.length;
        if (req.length === undefined ? false : received > req.length) return conn.fail(protocolError(`it sent more than the ${req.length} bytes asked for`));
        // Frames already read keep arriving while paused: one drain listener per pause, not per frame.
        if (!out.write(chunk) && !waitingForDrain) {
          waitingForDrain = true;
          conn.pause();
          out.once("drain", () => {
            waitingForDrain = false;
            conn.resume();
          });
        }
      });
      conn.once("eof", () => {
        out.end();
        conn.close();
      });
      conn.once("close", () => {
        if (!settled) reject(conn.closeError("agent closed the connection during fs.read"));
        else if (handedOut && !out.writableEnded) out.destroy(conn.closeError("agent connection closed mid-file"));
      });
      out.on("close", () => {
        if (!conn.closed) conn.close();
      });
    });
  }

  /** Streams `source` into a file in the VM; resolves after the agent's atomic rename. */
  async writeStream(req: Extract<Request, { op: "fs.write" }>, source: Readable | Buffer): Promise<number> {
    const conn = await this.open(req, { replyMs: false });
    const reply = new Promise<number>((resolve, reject) => {
      conn.once("json", (r: Reply) => {
        conn.close();
        const err = agentError(r);
        if (err) reject(err);
        else if (r.type !== "ok") reject(protocolError(`it answered ${r.type} to fs.write`));
        else resolve(r.size ?? 0);
      });
      conn.once("close", () => reject(conn.closeError("agent closed the connection during fs.write")));
    });
    reply.catch(() => undefined); // observed below; avoid an unhandled rejection while still sending
    try {
      // The agent writes what it gets to a file, so it always drains unless it is broken.
      const drainMs = AGENT_DEADLINES.replyMs;
      if (Buffer.isBuffer(source)) await conn.sendData(source, drainMs);
      else await conn.sendStream(source, drainMs);
      conn.sendEof();
      const cancel = conn.deadline(AGENT_DEADLINES.replyMs, `the VM's agent did not confirm fs.write within ${AGENT_DEADLINES.replyMs} ms of the upload's end`);
      conn.once("json", cancel);
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

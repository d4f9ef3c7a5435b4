import type net from "node:net";
import type { Readable, Writable } from "node:stream";
import {
  FrameDecoder,
  FrameType,
  MAX_FRAME_PAYLOAD,
  MAX_JSON_PAYLOAD,
  encodeFrame,
  encodeJson,
  parseJson,
  type Frame,
  type Reply,
} from "@capsule/agent-protocol";
import { badRequest, toAgentError } from "./errors.js";
import { log } from "./log.js";
import { withLargeReads } from "./socket-reads.js";

/** A host that connects and never sends its request must not hold a descriptor forever. */
const REQUEST_TIMEOUT_MS = 30_000;
/**
 * After our last reply we keep reading (and discarding) until the host hangs up: closing a unix
 * socket with unread input makes the peer's next read fail with ECONNRESET, which would turn a
 * clean reply into an error on the host. A host that never hangs up is cut off after this.
 */
const LINGER_MS = 5_000;

export type FrameHandler = (frame: Frame) => void;

export type RequestHandler = (request: unknown, conn: Conn) => Promise<void>;

/** Every host connection still open, so a checkpoint can close them all ({@link dropAllConnections}). */
const openConns = new Set<Conn>();

/**
 * Closes every host connection but `keep`, at once and without a reply: runsc cannot save an
 * open host connection. Operations see an ordinary hang-up, except that a running command is
 * not killed for it ({@link Conn.droppedForCheckpoint}).
 */
export function dropAllConnections(keep: Conn): void {
  for (const conn of openConns) if (conn !== keep) conn.dropForCheckpoint();
}

/**
 * One host connection carrying one operation: frame decoding, replies, and backpressure in both
 * directions. Frames that arrive after the request but before the operation is ready for them
 * (it may still be resolving the user, say) are held, with the socket paused, until it calls
 * {@link onFrames}.
 */
export class Conn {
  readonly #sock: net.Socket;
  // Data frames in pieces, as they arrive: an upload goes to its file without being joined first.
  readonly #decoder = new FrameDecoder({ streamData: true });
  readonly #onRequest: RequestHandler;
  #requested = false;
  #handler: FrameHandler | undefined;
  #held: Frame[] = [];
  #inputBlocked = false;
  #finished = false;
  #dropped = false;
  readonly #requestTimer: NodeJS.Timeout;
  readonly #onData = (chunk: Buffer): void => this.#receive(chunk);

  /** `accepted`: a connection a net.Server just accepted (its reads are made larger) or any other socket. */
  constructor(accepted: net.Socket, onRequest: RequestHandler) {
    const sock = withLargeReads(accepted);
    this.#sock = sock;
    this.#onRequest = onRequest;
    this.#requestTimer = setTimeout(() => this.fail(badRequest("no request received")), REQUEST_TIMEOUT_MS);
    sock.on("data", this.#onData);
    // Resets and broken pipes surface as "close"; there is nothing more to do with them here.
    sock.on("error", () => undefined);
    openConns.add(this);
    sock.on("close", () => {
      openConns.delete(this);
      clearTimeout(this.#requestTimer);
    });
  }

  get finished(): boolean {
    return this.#finished || this.#sock.destroyed;
  }

  /** True once a checkpoint closed this connection: what the host started here goes on without it. */
  get droppedForCheckpoint(): boolean {
    return this.#dropped;
  }

  /** Closes the connection at once, for {@link dropAllConnections}. */
  dropForCheckpoint(): void {
    this.#dropped = true;
    this.#finished = true;
    this.#sock.destroy();
  }

  /**
   * Sends the last reply and closes our end once the kernel took it, without lingering for the
   * host's hang-up: the host reads the reply, then end-of-file, and knows this end is closed.
   */
  finishNow(reply: Reply): void {
    if (this.finished) return;
    this.#finished = true;
    clearTimeout(this.#requestTimer);
    this.#sock.write(encodeJson(reply), () => this.#sock.destroy());
  }

  /** Delivers every later frame (and any held ones) to `handler`. */
  onFrames(handler: FrameHandler): void {
    this.#handler = handler;
    const held = this.#held;
    this.#held = [];
    for (const frame of held) this.#deliver(frame);
    if (!this.#inputBlocked) this.#sock.resume();
  }

  /** Runs `callback` once the host connection is gone (hang-up, error or our own finish). */
  onClose(callback: () => void): void {
    if (this.#sock.destroyed) queueMicrotask(callback);
    else this.#sock.once("close", callback);
  }

  /** Sends bytes as frames of `type`; false means the socket is full, wait for {@link onDrain}. */
  send(type: FrameType, data: Buffer): boolean {
    if (this.finished) return true;
    if (data.length <= MAX_FRAME_PAYLOAD) return this.#sock.write(encodeFrame(type, data));
    let ok = true;
    for (let off = 0; off < data.length; off += MAX_FRAME_PAYLOAD) {
      ok = this.#sock.write(encodeFrame(type, data.subarray(off, off + MAX_FRAME_PAYLOAD)));
    }
    return ok;
  }

  /**
   * Sends one frame whose header the caller wrote into its first bytes; resolves once the socket
   * has taken it (or the connection is gone), when the caller may reuse the buffer.
   */
  sendFrame(frame: Buffer): Promise<void> {
    if (this.finished) return Promise.resolve();
    return new Promise((resolve) => this.#sock.write(frame, () => resolve()));
  }

  sendJson(reply: Reply): boolean {
    if (this.finished) return true;
    const frame = encodeJson(reply);
    if (frame.length - 5 > MAX_JSON_PAYLOAD) {
      return this.#sock.write(encodeJson({ type: "error", code: "INTERNAL", message: `reply of ${frame.length} bytes exceeds the JSON frame limit` }));
    }
    return this.#sock.write(frame);
  }

  /** Runs `callback` once the socket can take more, or once it is gone (sending is a no-op then). */
  onDrain(callback: () => void): void {
    const done = () => {
      this.#sock.off("drain", done).off("close", done);
      callback();
    };
    this.#sock.once("drain", done).once("close", done);
  }

  /** Streams `source` out as frames of `type`, pausing it whenever the socket is full. */
  pipeFrom(source: Readable, type: FrameType): void {
    source.on("data", (chunk: Buffer) => {
      if (this.send(type, chunk)) return;
      source.pause();
      this.onDrain(() => source.resume());
    });
  }

  /** Writes host data to `sink`; while the sink is full, stops reading from the host. */
  writeTo(sink: Writable, data: Buffer): void {
    if (sink.write(data) || this.#inputBlocked) return;
    this.#inputBlocked = true;
    this.#sock.pause();
    const unblock = () => {
      sink.off("drain", unblock);
      sink.off("close", unblock);
      this.#inputBlocked = false;
      this.#sock.resume();
    };
    sink.on("drain", unblock);
    sink.on("close", unblock);
  }

  /** Replies with an error and ends the operation. Once the host is gone, failures are its echo. */
  fail(err: unknown): void {
    if (this.finished) return;
    const e = toAgentError(err);
    if (e.code === "INTERNAL") log(`internal error: ${err instanceof Error ? (err.stack ?? err.message) : e.message}`);
    this.sendJson({ type: "error", code: e.code, message: e.message });
    this.finish();
  }

  /** Ends the operation: no more replies, input discarded until the host hangs up. */
  finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    clearTimeout(this.#requestTimer);
    this.#handler = () => undefined;
    this.#held = [];
    this.#sock.end();
    this.#sock.resume();
    const linger = setTimeout(() => this.#sock.destroy(), LINGER_MS);
    this.#sock.once("close", () => clearTimeout(linger));
  }

  /**
   * Ends the framed protocol and hands over the raw socket (paused), for an operation whose
   * connection carries unframed bytes after its last reply (`tcp.connect`). The host sends
   * nothing after its request until that reply, so bytes already decoded are a protocol
   * violation: the operation fails and undefined is returned, as it is once the host is gone.
   */
  release(): net.Socket | undefined {
    if (this.finished) return undefined;
    if (this.#decoder.pending > 0 || this.#held.length > 0) {
      this.fail(badRequest("data came before the connection was established"));
      return undefined;
    }
    this.#finished = true;
    this.#sock.off("data", this.#onData);
    this.#sock.pause();
    return this.#sock;
  }

  #receive(chunk: Buffer): void {
    if (this.#finished) return;
    let frames: Frame[];
    try {
      frames = this.#decoder.push(chunk);
    } catch (err) {
      this.fail(err);
      return;
    }
    for (const frame of frames) {
      if (this.#finished) return;
      if (!this.#requested) this.#startRequest(frame);
      else if (this.#handler) this.#deliver(frame);
      else this.#held.push(frame);
    }
  }

  #startRequest(frame: Frame): void {
    this.#requested = true;
    clearTimeout(this.#requestTimer);
    this.#sock.pause();
    if (frame.type !== FrameType.Json) {
      this.fail(badRequest("the first frame must be a JSON request"));
      return;
    }
    let request: unknown;
    try {
      request = parseJson(frame.payload, "the request");
    } catch (err) {
      this.fail(err);
      return;
    }
    this.#onRequest(request, this).catch((err: unknown) => this.fail(err));
  }

  #deliver(frame: Frame): void {
    try {
      this.#handler?.(frame);
    } catch (err) {
      this.fail(err);
    }
  }
}

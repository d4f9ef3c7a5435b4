import { ProtocolError } from "./errors.js";

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
      if (type < FrameType.Json || type > FrameType.Eof) throw new ProtocolError(`unknown frame type ${type}`);
      const limit = type === FrameType.Json ? MAX_JSON_PAYLOAD : MAX_FRAME_PAYLOAD;
      if (len > limit) throw new ProtocolError(`frame of ${len} bytes exceeds the ${limit} byte limit`);
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


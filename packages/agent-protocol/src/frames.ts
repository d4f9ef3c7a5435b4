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

/** Bytes of a frame header: type (u8), payload length (u32 big-endian). */
export const FRAME_HEADER_BYTES = 5;

/** Writes a frame header into the first {@link FRAME_HEADER_BYTES} of `target`. */
export function writeFrameHeader(target: Buffer, type: FrameType, payloadLength: number): void {
  target.writeUInt8(type, 0);
  target.writeUInt32BE(payloadLength, 1);
}

/** Encodes one frame header + payload. */
export function encodeFrame(type: FrameType, payload: Buffer | Uint8Array | string): Buffer {
  const body = typeof payload === "string" ? Buffer.from(payload, "utf8") : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  writeFrameHeader(header, type, body.length);
  return Buffer.concat([header, body]);
}

export function encodeJson(value: unknown): Buffer {
  return encodeFrame(FrameType.Json, JSON.stringify(value));
}

const isData = (type: FrameType): boolean => type === FrameType.Stdin || type === FrameType.Stdout || type === FrameType.Stderr;

export interface FrameDecoderOptions {
  /**
   * Deliver the payload of a Stdin, Stdout or Stderr frame in pieces, as its bytes arrive: each
   * piece is a frame of that type whose payload is a view of a pushed chunk, never a copy. JSON
   * and Eof frames still come whole. Headers are checked exactly as without it. For a peer that
   * only moves the bytes on (a file upload): no buffer per frame to allocate and fill, which
   * inside gVisor (every fresh page a fault the sandbox's kernel serves) is most of the cost.
   */
  streamData?: boolean;
}

/**
 * Incremental frame decoder: push chunks in, get whole frames out. Throws on a frame type it
 * does not know or a payload over the limits, because either means the peer is broken or hostile.
 * Chunks are kept as they came and each byte is copied at most once, when a frame spans chunks:
 * sockets deliver 64 KiB reads, and re-joining a buffer per read would copy a 1 MiB frame
 * about eight times over. With `streamData`, data frames are not joined at all.
 */
export class FrameDecoder {
  readonly #streamData: boolean;
  #chunks: Buffer[] = [];
  #head = 0;
  #length = 0;
  /** The data frame being streamed: its type, payload bytes still to come, and bytes delivered so far. */
  #dataType: FrameType = FrameType.Stdout;
  #dataLeft = 0;
  #dataDone = 0;

  constructor(opts: FrameDecoderOptions = {}) {
    this.#streamData = opts.streamData ?? false;
  }

  push(chunk: Buffer): Frame[] {
    if (chunk.length > 0) {
      this.#chunks.push(chunk);
      this.#length += chunk.length;
    }
    const frames: Frame[] = [];
    for (;;) {
      if (this.#dataLeft > 0) {
        if (this.#length === 0) break;
        const piece = this.#takePiece(this.#dataLeft);
        this.#dataLeft -= piece.length;
        this.#dataDone = this.#dataLeft > 0 ? this.#dataDone + piece.length : 0;
        frames.push({ type: this.#dataType, payload: piece });
        continue;
      }
      if (this.#length < FRAME_HEADER_BYTES) break;
      const header = this.#peek(FRAME_HEADER_BYTES);
      const type = header.readUInt8(0);
      const len = header.readUInt32BE(1);
      if (type < FrameType.Json || type > FrameType.Eof) throw new ProtocolError(`unknown frame type ${type}`);
      const limit = type === FrameType.Json ? MAX_JSON_PAYLOAD : MAX_FRAME_PAYLOAD;
      if (len > limit) throw new ProtocolError(`frame of ${len} bytes exceeds the ${limit} byte limit`);
      if (this.#streamData && len > 0 && isData(type as FrameType)) {
        this.#take(FRAME_HEADER_BYTES);
        this.#dataType = type as FrameType;
        this.#dataLeft = len;
        this.#dataDone = FRAME_HEADER_BYTES;
        continue;
      }
      if (this.#length < FRAME_HEADER_BYTES + len) break;
      frames.push({ type: type as FrameType, payload: this.#take(FRAME_HEADER_BYTES + len).subarray(FRAME_HEADER_BYTES) });
    }
    return frames;
  }

  /** Bytes of a frame begun and not finished (with `streamData`, its delivered pieces count too). */
  get pending(): number {
    return this.#length + this.#dataDone;
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

  /** Removes and returns up to `max` buffered bytes (there are some) from the first chunk: a view, no copy. */
  #takePiece(max: number): Buffer {
    const first = this.#chunks[this.#head] as Buffer;
    const n = Math.min(max, first.length);
    const out = first.subarray(0, n);
    this.#drop(first, n);
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


import fs from "node:fs";
import fsp from "node:fs/promises";
import { MAX_SERVICE_LOG_LINES, MAX_SERVICE_LOG_REPLY_BYTES, type ServiceLogEntry, type ServiceLogStream } from "@capsule/agent-protocol";

/**
 * A service's log: one line per entry, `<ms> <o|e|s> <message bytes>`, appended to `<name>.log`;
 * past {@link LOG_FILE_MAX_BYTES} it becomes `<name>.log.1` (the previous one dropped), so a
 * service keeps at most two files' worth whatever it writes. Messages are stored as the bytes
 * the service wrote (no newline can be in one: lines are split on it) and decoded on reading.
 */
export const LOG_FILE_MAX_BYTES = 1024 * 1024;
export const ROTATED_SUFFIX = ".1";
/** Bytes of a log file a read looks at, from its end: a file guest root grew by hand is not read whole. */
const READ_WINDOW_BYTES = 2 * LOG_FILE_MAX_BYTES;

const STREAM_CODES: Record<ServiceLogStream, string> = { stdout: "o", stderr: "e", supervisor: "s" };
const STREAMS_BY_CODE = new Map(Object.entries(STREAM_CODES).map(([s, c]) => [c, s as ServiceLogStream]));
const NEWLINE = 0x0a;
const LINE_HEAD_RE = /^(\d{1,15}) ([oes]) /;

/**
 * Splits a byte stream into lines, without their `\n` (and a trailing `\r`). A line longer than
 * `maxLineBytes` comes out in pieces of that size, so a service that never writes a newline
 * holds at most that much here.
 */
export class LineSplitter {
  #partial: Buffer[] = [];
  #partialBytes = 0;

  constructor(
    private readonly maxLineBytes: number,
    private readonly emit: (line: Buffer) => void,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    while (start <= chunk.length) {
      const nl = chunk.indexOf(NEWLINE, start);
      let piece = chunk.subarray(start, nl === -1 ? chunk.length : nl);
      while (this.#partialBytes + piece.length > this.maxLineBytes) {
        const take = this.maxLineBytes - this.#partialBytes;
        this.#emitLine([...this.#partial, piece.subarray(0, take)]);
        piece = piece.subarray(take);
      }
      if (piece.length > 0) {
        // A copy: the chunk's memory is not kept alive for a few bytes of it.
        this.#partial.push(Buffer.from(piece));
        this.#partialBytes += piece.length;
      }
      if (nl === -1) return;
      this.#emitLine(this.#partial);
      start = nl + 1;
    }
  }

  /** The last line, when the stream ended without a newline. */
  flush(): void {
    if (this.#partialBytes > 0) this.#emitLine(this.#partial);
  }

  #emitLine(pieces: Buffer[]): void {
    let line = pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces);
    this.#partial = [];
    this.#partialBytes = 0;
    if (line.at(-1) === 0x0d) line = line.subarray(0, -1);
    this.emit(line);
  }
}

/** After the log file failed (a full disk), how long lines are dropped before it is opened again. */
export const LOG_REOPEN_BACKOFF_MS = 5_000;

/**
 * Appends entries to a service's log file and rotates it. `write` returns false while the file
 * lags behind; the caller then stops reading the service's output until {@link onDrain}, so a
 * flood is slowed down to the disk's pace instead of piling up in memory.
 *
 * A file that fails (a write error such as ENOSPC destroys its stream; an open can fail too)
 * never holds the service up: waiters are released at once, lines are dropped and counted, and
 * after `reopenAfterMs` the next line opens the file again, led by a line saying how many were lost.
 */
export class ServiceLogWriter {
  #stream: fs.WriteStream | undefined;
  #size = 0;
  #drainWaiters: Array<() => void> = [];
  /** When the file last failed; lines are dropped until `reopenAfterMs` after it. */
  #failedAt = 0;
  #failure = "";
  #dropped = 0;

  constructor(
    readonly file: string,
    private readonly maxBytes = LOG_FILE_MAX_BYTES,
    private readonly reopenAfterMs = LOG_REOPEN_BACKOFF_MS,
  ) {
    this.#open();
  }

  /** Lines lost to a failing file since it last worked. */
  get dropped(): number {
    return this.#dropped;
  }

  write(stream: ServiceLogStream, message: Buffer, timeMs = Date.now()): boolean {
    if (!this.#stream && (Date.now() - this.#failedAt < this.reopenAfterMs || !this.#open())) {
      this.#dropped++;
      return true;
    }
    if (this.#dropped > 0) {
      const lost = this.#dropped;
      this.#dropped = 0;
      this.#append("supervisor", Buffer.from(`${lost} log lines were dropped: the log file failed (${this.#failure})`), timeMs);
    }
    return this.#append(stream, message, timeMs);
  }

  onDrain(callback: () => void): void {
    if (!this.#stream) return callback();
    if (this.#drainWaiters.push(callback) === 1) this.#stream.once("drain", () => this.#drained());
  }

  close(): void {
    this.#stream?.end();
  }

  #append(stream: ServiceLogStream, message: Buffer, timeMs: number): boolean {
    const entry = Buffer.concat([Buffer.from(`${timeMs} ${STREAM_CODES[stream]} `), message, Buffer.from("\n")]);
    if (this.#size > 0 && this.#size + entry.length > this.maxBytes) this.#rotate();
    if (!this.#stream) {
      this.#dropped++;
      return true;
    }
    this.#size += entry.length;
    return this.#stream.write(entry);
  }

  #drained(): void {
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const w of waiters) w();
  }

  /** The open descriptor moves with the rename, so writes still queued land in the old file. */
  #rotate(): void {
    const old = this.#stream;
    this.#stream = undefined; // its queued writes finish; a failure to open the next one must not destroy it
    old?.end();
    try {
      fs.renameSync(this.file, this.file + ROTATED_SUFFIX);
    } catch {
      // The file was removed under us (the service deleted): the new one starts afresh anyway.
    }
    this.#open();
    this.#drained(); // the new file takes writes at once (or drops them); an ended stream may never drain
  }

  /** By descriptor, opened now: a stream opened by path later could open a file renamed meanwhile. */
  #open(): boolean {
    let fd: number | undefined;
    try {
      fd = fs.openSync(this.file, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600);
      this.#size = fs.fstatSync(fd).size;
    } catch (err) {
      if (fd !== undefined) fs.closeSync(fd);
      this.#failed(err as Error);
      return false;
    }
    const stream = fs.createWriteStream("", { fd });
    // A full disk loses log lines, never the agent; an ended stream's late error is not the new one's.
    stream.on("error", (err) => {
      if (this.#stream === stream) this.#failed(err);
    });
    this.#stream = stream;
    return true;
  }

  #failed(err: Error): void {
    this.#stream?.destroy();
    this.#stream = undefined;
    this.#failedAt = Date.now();
    this.#failure = (err as NodeJS.ErrnoException).code ?? err.message;
    this.#drained(); // a destroyed stream never drains: the service's pipes must not wait for it
  }
}

/** The last bytes (at most READ_WINDOW_BYTES) of a file; empty when there is none. */
async function tail(file: string): Promise<Buffer> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch {
    return Buffer.alloc(0);
  }
  try {
    const { size } = await fh.stat();
    const length = Math.min(size, READ_WINDOW_BYTES);
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, size - length);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** One stored line as an entry; undefined for anything that is not one (a cut first line, an edit). */
export function parseLogLine(line: Buffer): ServiceLogEntry | undefined {
  const head = LINE_HEAD_RE.exec(line.subarray(0, 20).toString("latin1"));
  if (!head) return undefined;
  const stream = STREAMS_BY_CODE.get(head[2] as string) as ServiceLogStream;
  // NUL cannot travel in the protocol's strings; bad UTF-8 becomes U+FFFD in the decode.
  const message = line.subarray(head[0].length).toString("utf8").replaceAll("\0", "\uFFFD");
  return { timeMs: Number(head[1]), stream, message };
}

/**
 * The newest `lines` entries at or after `sinceMs`, oldest first, cut (oldest dropped) so their
 * messages stay within MAX_SERVICE_LOG_REPLY_BYTES.
 */
export async function readServiceLog(file: string, opts: { lines?: number; sinceMs?: number } = {}): Promise<ServiceLogEntry[]> {
  const want = Math.min(opts.lines ?? MAX_SERVICE_LOG_LINES, MAX_SERVICE_LOG_LINES);
  const [older, newer] = await Promise.all([tail(file + ROTATED_SUFFIX), tail(file)]);
  const picked: ServiceLogEntry[] = [];
  let bytes = 0;
  for (const buf of [newer, older]) {
    let end = buf.length;
    while (end > 0 && picked.length < want) {
      const lineEnd = buf[end - 1] === NEWLINE ? end - 1 : end; // the last line may lack its newline
      // (lastIndexOf with a negative offset would search from the buffer's end.)
      const start = lineEnd === 0 ? 0 : buf.lastIndexOf(NEWLINE, lineEnd - 1) + 1;
      const entry = parseLogLine(buf.subarray(start, lineEnd));
      end = start;
      if (!entry) continue;
      if (opts.sinceMs !== undefined && entry.timeMs < opts.sinceMs) return picked.reverse();
      bytes += entry.message.length;
      if (bytes > MAX_SERVICE_LOG_REPLY_BYTES) return picked.reverse();
      picked.push(entry);
    }
  }
  return picked.reverse();
}

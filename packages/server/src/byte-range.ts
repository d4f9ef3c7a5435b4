/**
 * HTTP `Range` on the raw file downloads (`/v1` files-raw and `/v5` fs/read): one parser and one
 * answer, so both routes serve the same 200, 206 + `Content-Range`, 416 and 400. A Range is never
 * ignored (0.2 does not check the status): a malformed one or several ranges are a 400.
 * @module
 */
import { finished, type Readable } from "node:stream";
import { ApiError } from "./errors.js";

/**
 * Download bytes the web body holds before it stops reading the guest stream (which then stops
 * the agent through its own backpressure): a few socket reads, so the HTTP side always has the
 * next chunk ready.
 */
const BODY_HIGH_WATER_BYTES = 1024 * 1024;

/** `bytes=a-b`, `bytes=a-` or `bytes=-n` (the last n bytes). */
export type ByteRange = { start: number; end?: number } | { suffix: number };

/** A single byte range; undefined without the header. Several ranges are refused, not merged. */
export function parseRange(header: string | undefined): ByteRange | undefined {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  const bad = () => new ApiError("FILES_BAD_REQUEST", `Range must be one byte range (bytes=a-b, bytes=a- or bytes=-n), got ${JSON.stringify(header)}`);
  // Past 2^53 a number is no file offset, and the agent protocol refuses it.
  const num = (digits: string) => {
    const n = Number(digits);
    if (!Number.isSafeInteger(n)) throw bad();
    return n;
  };
  if (!m || (m[1] === "" && m[2] === "")) throw bad();
  if (m[1] === "") return { suffix: num(m[2] ?? "") };
  const start = num(m[1] ?? "");
  if (m[2] === "") return { start };
  const end = num(m[2] ?? "");
  if (end < start) throw bad();
  return { start, end };
}

/** What to ask the guest to read for a range. A suffix needs the file's size (`sizeForSuffix`, from a stat). */
export async function readWindow(range: ByteRange, sizeForSuffix: () => Promise<number>): Promise<{ offset: number; length?: number }> {
  if ("suffix" in range) return { offset: Math.max(0, (await sizeForSuffix()) - range.suffix), length: range.suffix };
  return range.end === undefined ? { offset: range.start } : { offset: range.start, length: range.end - range.start + 1 };
}

/**
 * The download's answer: `stream` holds the file's bytes from `offset` (0 without a range), `size`
 * is the file's size as the read found it. 416 (the stream destroyed) when the range selects no
 * byte. The body is cut at its Content-Length: a file that reads longer than its stat (/proc files
 * stat as 0 bytes, a file still growing) would otherwise put guest bytes on the connection after
 * the response, read by the client as the next response (found by the fuzzer).
 */
export function fileResponse(file: { size: number; stream: Readable; offset: number }, range: ByteRange | undefined): Response {
  const { size, stream, offset } = file;
  if (range !== undefined && (offset >= size || ("suffix" in range && range.suffix === 0))) {
    stream.destroy();
    throw new ApiError("FILES_BAD_REQUEST", `range not satisfiable: the file is ${size} bytes`, 416, { reason: "RANGE_NOT_SATISFIABLE" });
  }
  const end = range !== undefined && "start" in range && range.end !== undefined ? Math.min(size - 1, range.end) : size - 1;
  const count = Math.max(0, end - offset + 1);
  const headers: Record<string, string> = { "content-type": "application/octet-stream", "content-length": String(count), "accept-ranges": "bytes" };
  if (range !== undefined) headers["content-range"] = `bytes ${offset}-${end}/${size}`;
  return new Response(cappedBody(stream, count), { status: range === undefined ? 200 : 206, headers });
}

/**
 * The first `limit` bytes of `stream` as a web body; the stream is destroyed once they are in (or
 * the client goes away), which ends the guest read. Chunks are enqueued as they are, not copied:
 * `Readable.toWeb` copies every chunk (to detach pooled buffers; ours are the agent socket's own
 * reads), which was a full extra copy of every download.
 */
function cappedBody(stream: Readable, limit: number): ReadableStream<Uint8Array> {
  let left = limit;
  let open = true;
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        const end = (err?: unknown) => {
          if (!open) return;
          open = false;
          if (err === undefined) controller.close();
          else controller.error(err);
        };
        if (left === 0) {
          end();
          stream.destroy();
          return;
        }
        stream.on("data", (chunk: Buffer) => {
          if (!open) return;
          const part = chunk.length > left ? chunk.subarray(0, left) : chunk;
          left -= part.length;
          controller.enqueue(part);
          if (left === 0) {
            end();
            stream.destroy();
          } else if ((controller.desiredSize ?? 0) <= 0) stream.pause();
        });
        // An error, or a close before the end (the agent connection lost): the body fails, so the
        // client sees a cut response rather than a short one that looks complete.
        finished(stream, (err) => end(err ?? undefined));
      },
      pull() {
        stream.resume();
      },
      cancel() {
        open = false;
        stream.destroy();
      },
    },
    new ByteLengthQueuingStrategy({ highWaterMark: BODY_HIGH_WATER_BYTES }),
  );
}

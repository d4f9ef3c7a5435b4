/**
 * `GET /v5/vms/{vm_id}/fs/read?path=`: a file's raw bytes, streamed from the guest, with `Range`
 * (`bytes=a-b`, `bytes=a-`, `bytes=-n`) answered 206 and `Content-Range`. 0.2 does not check the
 * status, so a Range is never ignored: a malformed one is a 400, one past the end a 416.
 * @module
 */
import { pipeline, Readable, Transform } from "node:stream";
import { createRoute, z } from "@hono/zod-openapi";
import { PathQuery } from "@capsule/contract/v5";
import type { App, Deps } from "../../context.js";
import { ApiError } from "../../errors.js";
import { guestPath } from "../../guest-path.js";
import { VmParams } from "../../schemas.js";
import { account, errors, security } from "../common.js";

type Range = { start: number; end?: number } | { suffix: number };

/** A single byte range; undefined without the header. Several ranges are refused, not merged. */
export function parseRange(header: string | undefined): Range | undefined {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  const bad = () => new ApiError("FILES_BAD_REQUEST", `Range must be one byte range (bytes=a-b, bytes=a- or bytes=-n), got ${JSON.stringify(header)}`);
  if (!m || (m[1] === "" && m[2] === "")) throw bad();
  if (m[1] === "") return { suffix: Number(m[2]) };
  const start = Number(m[1]);
  if (m[2] === "") return { start };
  const end = Number(m[2]);
  if (end < start) throw bad();
  return { start, end };
}

/** Passes on at most `limit` bytes: a guest file that reads longer than its stat is cut there. */
function capped(limit: number): Transform {
  let sent = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      const part = chunk.subarray(0, Math.max(0, limit - sent));
      sent += part.length;
      done(null, part.length > 0 ? part : undefined);
    },
  });
}

export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/v5/vms/{vm_id}/fs/read",
      summary: "Read a file's bytes (v5)",
      description: "Streams the file as `application/octet-stream`, read as root. `Range: bytes=a-b | a- | -n` answers 206 with `Content-Range`; a range starting past the end answers 416 FILES_BAD_REQUEST (`reason: RANGE_NOT_SATISFIABLE`).",
      security,
      request: { params: VmParams, query: PathQuery },
      responses: {
        200: { description: "The file's bytes", content: { "application/octet-stream": { schema: z.string().openapi({ format: "binary" }) } } },
        206: { description: "The range's bytes", content: { "application/octet-stream": { schema: z.string().openapi({ format: "binary" }) } } },
        ...errors(400, 404, 416),
      },
    }),
    async (c) => {
      const { vm_id } = c.req.valid("param");
      const path = guestPath(c.req.valid("query").path);
      const range = parseRange(c.req.header("range"));
      // The hold lasts as long as the download: released when the guest stream closes or fails.
      const file = await svc.gateway.open(account(c), vm_id, { badRequest: "FILES_BAD_REQUEST" }, async (_vm, guest) => {
        if (range === undefined) return { ...(await guest.readFileStream(path, {})), start: 0 };
        // A suffix needs the size first; a start is read from at once.
        const start = "suffix" in range ? Math.max(0, (await guest.stat(path, {})).size - range.suffix) : range.start;
        const length = "suffix" in range ? range.suffix : range.end === undefined ? undefined : range.end - range.start + 1;
        return { ...(await guest.readFileStream(path, { offset: start, ...(length !== undefined ? { length } : {}) })), start };
      });
      const { size, stream, start } = file.value;
      stream.once("close", file.release);
      stream.once("error", file.release);
      const end = range === undefined ? size - 1 : Math.min(size - 1, "suffix" in range || range.end === undefined ? size - 1 : range.end);
      if (range !== undefined && (start >= size || ("suffix" in range && range.suffix === 0))) {
        stream.destroy();
        throw new ApiError("FILES_BAD_REQUEST", `range not satisfiable: the file is ${size} bytes`, 416, { reason: "RANGE_NOT_SATISFIABLE" });
      }
      const count = Math.max(0, end - start + 1);
      const body = pipeline(stream, capped(count), () => undefined);
      const headers: Record<string, string> = { "content-type": "application/octet-stream", "content-length": String(count), "accept-ranges": "bytes" };
      if (range !== undefined) headers["content-range"] = `bytes ${start}-${end}/${size}`;
      return new Response(Readable.toWeb(body) as unknown as ReadableStream<Uint8Array>, { status: range === undefined ? 200 : 206, headers });
    },
  );
}

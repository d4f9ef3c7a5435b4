import { pipeline, Readable, Transform } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { createRoute, z } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { ApiError } from "../errors.js";
import { guestPath } from "../guest-path.js";
import { FileParams, LinuxUserHeader } from "../schemas.js";
import { account, errors, json, linuxUser, security } from "./common.js";

/** Paths of the raw file routes; app.ts exempts them from the JSON body limit (the VM's disk is the limit). */
export const RAW_FILES_PATH = /^\/v1\/vms\/[^/]+\/files-raw\//;

const RawQuery = z.object({ mode: z.string().regex(/^[0-7]{3,4}$/).optional().openapi({ description: "File mode in octal (e.g. 0755) for a new file; default 0644" }) });

/**
 * Capsule extension: file bytes as `application/octet-stream`, streamed to and from the guest
 * agent with backpressure, so files of any size move without base64 or buffering.
 */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/vms/{vm_id}/files-raw/{filepath}",
      summary: "Download a file's bytes (Capsule extension)",
      description: "Streams the file as `application/octet-stream` with its `Content-Length`. The path is one percent-encoded segment (`/` as `%2F`). Read as the Linux-user header's user.",
      security,
      request: { params: FileParams, headers: LinuxUserHeader },
      responses: { 200: { description: "The file's bytes", content: { "application/octet-stream": { schema: z.string().openapi({ format: "binary" }) } } }, ...errors(400, 404) },
    }),
    async (c) => {
      const { vm_id, filepath } = c.req.valid("param");
      const path = guestPath(filepath);
      const user = linuxUser(c);
      const as = user ? { user } : {};
      // The hold lasts as long as the download: released when the guest stream closes or fails.
      const file = await svc.gateway.open(account(c), vm_id, { badRequest: "FILES_BAD_REQUEST" }, async (_vm, guest) => {
        const st = await guest.stat(path, as);
        if (st.kind === "directory") throw new ApiError("FILES_BAD_REQUEST", `${path} is a directory; list it with GET /v1/vms/{vm_id}/files/{path}`);
        return guest.readFileStream(path, as);
      });
      const { size, stream } = file.value;
      stream.once("close", file.release);
      stream.once("error", file.release);
      // The body is cut at the Content-Length the stat gave: a file that reads longer than its size
      // (/proc files stat as 0 bytes, a file still growing) would otherwise put guest bytes on the
      // connection after the response, read by the client as the next response (found by the fuzzer).
      let sent = 0;
      const capped = new Transform({
        transform(chunk: Buffer, _enc, done) {
          const room = size - sent;
          const part = chunk.length > room ? chunk.subarray(0, Math.max(0, room)) : chunk;
          sent += part.length;
          done(null, part.length > 0 ? part : undefined);
        },
      });
      pipeline(stream, capped, () => undefined);
      const body = Readable.toWeb(capped) as unknown as ReadableStream<Uint8Array>;
      return new Response(body, { status: 200, headers: { "content-type": "application/octet-stream", "content-length": String(size) } });
    },
  );
  app.openapi(
    createRoute({
      method: "put",
      path: "/v1/vms/{vm_id}/files-raw/{filepath}",
      summary: "Upload a file's bytes (Capsule extension)",
      description:
        "Body: the file's bytes (`application/octet-stream`), streamed to the guest; no size limit beyond the VM's disk. Written atomically, creating missing parent directories, owned by the Linux-user header's user (root without it). Answers `{bytes}`.",
      security,
      request: { params: FileParams, headers: LinuxUserHeader, query: RawQuery },
      responses: { 200: json(z.object({ bytes: z.number() })), ...errors(400, 404) },
    }),
    async (c) => {
      const { vm_id, filepath } = c.req.valid("param");
      const { mode } = c.req.valid("query");
      const path = guestPath(filepath);
      const user = linuxUser(c);
      const bytes = await svc.gateway.withVm(account(c), vm_id, { badRequest: "FILES_BAD_REQUEST" }, async (_vm, guest) => {
        const raw = c.req.raw.body;
        const source = raw ? Readable.fromWeb(raw as unknown as WebReadableStream<Uint8Array>) : Readable.from([]);
        try {
          return await guest.writeFile(path, source, { mkdirs: true, ...(user ? { user } : {}), ...(mode ? { mode: parseInt(mode, 8) } : {}) });
        } catch (err) {
          source.destroy();
          throw err;
        }
      });
      return c.json({ bytes }, 200);
    },
  );
}

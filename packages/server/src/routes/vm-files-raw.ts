import { createRoute, z } from "@hono/zod-openapi";
import { fileResponse, parseRange, readWindow } from "../byte-range.js";
import type { App, Deps } from "../context.js";
import { ApiError } from "../errors.js";
import { guestPath } from "../guest-path.js";
import { requestBody } from "../request-body.js";
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
      description:
        "Streams the file as `application/octet-stream` with its `Content-Length`. The path is one percent-encoded segment (`/` as `%2F`). Read as the Linux-user header's user. `Range: bytes=a-b | a- | -n` (one range) answers 206 with `Content-Range`; a range starting past the end answers 416 FILES_BAD_REQUEST (`reason: RANGE_NOT_SATISFIABLE`); a malformed Range, or several ranges, 400 FILES_BAD_REQUEST.",
      security,
      request: { params: FileParams, headers: LinuxUserHeader },
      responses: {
        200: { description: "The file's bytes", content: { "application/octet-stream": { schema: z.string().openapi({ format: "binary" }) } } },
        206: { description: "The range's bytes", content: { "application/octet-stream": { schema: z.string().openapi({ format: "binary" }) } } },
        ...errors(400, 404, 416),
      },
    }),
    async (c) => {
      const { vm_id, filepath } = c.req.valid("param");
      const path = guestPath(filepath);
      const range = parseRange(c.req.header("range"));
      const user = linuxUser(c);
      const as = user ? { user } : {};
      // The hold lasts as long as the download: released when the guest stream closes or fails.
      const file = await svc.gateway.open(account(c), vm_id, { badRequest: "FILES_BAD_REQUEST" }, async (_vm, guest) => {
        const st = await guest.stat(path, as);
        if (st.kind === "directory") throw new ApiError("FILES_BAD_REQUEST", `${path} is a directory; list it with GET /v1/vms/{vm_id}/files/{path}`);
        const window = range === undefined ? { offset: 0 } : await readWindow(range, () => Promise.resolve(st.size));
        return { ...(await guest.readFileStream(path, { ...as, ...window })), offset: window.offset };
      });
      file.value.stream.once("close", file.release);
      file.value.stream.once("error", file.release);
      return fileResponse(file.value, range);
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
        const source = requestBody(c);
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

/**
 * `GET /v5/vms/{vm_id}/fs/read?path=`: a file's raw bytes, streamed from the guest, with `Range`
 * (`bytes=a-b`, `bytes=a-`, `bytes=-n`) answered 206 and `Content-Range`; a malformed one is a
 * 400, one past the end a 416 (`byte-range.ts`, shared with `/v1` files-raw).
 * @module
 */
import { createRoute, z } from "@hono/zod-openapi";
import { PathQuery } from "@capsule/contract/v5";
import { fileResponse, parseRange, readWindow } from "../../byte-range.js";
import type { App, Deps } from "../../context.js";
import { guestPath } from "../../guest-path.js";
import { VmParams } from "../../schemas.js";
import { account, errors, security } from "../common.js";

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
        const window = range === undefined ? { offset: 0 } : await readWindow(range, async () => (await guest.stat(path, {})).size);
        return { ...(await guest.readFileStream(path, window)), offset: window.offset };
      });
      file.value.stream.once("close", file.release);
      file.value.stream.once("error", file.release);
      return fileResponse(file.value, range);
    },
  );
}

/**
 * The v5 chunked, resumable upload (0.2's `fs.writeFile` above 8 MiB): `POST fs/uploads`,
 * `PUT fs/uploads/{upload_id}?offset=`, `GET fs/uploads/{upload_id}`, `POST .../commit`,
 * `DELETE fs/uploads/{upload_id}`. Sessions and their bounds: upload-sessions.ts.
 * @module
 */
import { createRoute, z } from "@hono/zod-openapi";
import { CreateUploadRequest, MAX_UPLOAD_BYTES, MAX_UPLOAD_CHUNK_BYTES, UploadChunkQuery, UploadStatus } from "@capsule/contract/v5";
import type { App, Deps } from "../../context.js";
import { guestPath } from "../../guest-path.js";
import { requestBody } from "../../request-body.js";
import { VmParams } from "../../schemas.js";
import { account, errors, json, security } from "../common.js";
import { MAX_UPLOAD_CHUNKS, UPLOAD_ROOT } from "./upload-sessions.js";

/** The chunk route's path: app.ts exempts it from the JSON body limit (a chunk has its own). */
export const V5_UPLOAD_CHUNK_PATH = /^\/v5\/vms\/[^/]+\/fs\/uploads\/[^/]+$/;

const UploadParams = VmParams.extend({ upload_id: z.string().max(64).openapi({ param: { name: "upload_id", in: "path" } }) });
const FILES = { badRequest: "FILES_BAD_REQUEST" } as const;

export function register(app: App, { svc, uploads }: Deps): void {

  app.openapi(
    createRoute({
      method: "post",
      path: "/v5/vms/{vm_id}/fs/uploads",
      summary: "Open a chunked upload (v5)",
      description: [
        `Opens an upload of \`size\` bytes (at most ${MAX_UPLOAD_BYTES}) to \`path\`; the file appears only on the commit. The chunks wait in the VM (under \`${UPLOAD_ROOT}\`, on its disk quota).`,
        "Bounds (server limits): `maxUploadSessionsPerAccount` open uploads per account and `maxUploadHeldBytesPerAccount` declared bytes among them (429 SESSION_CAP_REACHED, reason UPLOAD_SESSIONS / UPLOAD_BYTES); an upload unused for `uploadIdleMs` is aborted. Uploads live in the server process: a restart ends them (404, the client starts over); a server that stops removes their chunks from the VMs that run, and the VM's next upload removes any left (after a crash, or from a VM that was stopped).",
      ].join("\n\n"),
      security,
      request: { params: VmParams, body: { content: { "application/json": { schema: CreateUploadRequest } }, required: true } },
      responses: { 200: json(UploadStatus), ...errors(400, 404, 429) },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const path = guestPath(body.path);
      const acc = account(c);
      const s = await svc.gateway.withVm(acc, c.req.valid("param").vm_id, FILES, (vm, guest) => uploads.create(acc, guest, vm.id, body, path));
      return c.json(uploads.status(s), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "put",
      path: "/v5/vms/{vm_id}/fs/uploads/{upload_id}",
      summary: "Store one chunk of an upload (v5)",
      description: [
        `Body: the chunk's bytes (\`application/octet-stream\`, 1 to ${MAX_UPLOAD_CHUNK_BYTES}), streamed into the VM. \`offset\` must be the upload's \`receivedBytes\`: anything else (a gap, an overlap, a replay) answers 409 FILES_BAD_REQUEST (reason OFFSET_MISMATCH) and stores nothing; so does a second chunk while one is in flight (reason UPLOAD_BUSY). A chunk that runs past the declared size is 400 (reason CHUNK_PAST_SIZE), one over the chunk limit 413; an upload takes at most ${MAX_UPLOAD_CHUNKS} chunks.`,
        "A chunk is stored whole or not at all: when its request dies half-way, `receivedBytes` stays where it was and the chunk is sent again from there. Answers the upload's status.",
      ].join("\n\n"),
      security,
      request: { params: UploadParams, query: UploadChunkQuery },
      responses: { 200: json(UploadStatus), ...errors(400, 404, 409, 413) },
    }),
    async (c) => {
      const { vm_id, upload_id } = c.req.valid("param");
      const offset = Number(c.req.valid("query").offset);
      const length = c.req.header("content-length");
      const acc = account(c);
      const status = await svc.gateway.withVm(acc, vm_id, FILES, (vm, guest) => {
        const s = uploads.get(acc, vm.id, upload_id);
        return uploads.putChunk(s, guest, offset, length !== undefined ? Number(length) : undefined, requestBody(c));
      });
      return c.json(status, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v5/vms/{vm_id}/fs/uploads/{upload_id}",
      summary: "Where an upload stands (v5)",
      description: "`receivedBytes` is the offset the next chunk must start at. Another account's upload, or one that ended, is 404 SESSION_NOT_FOUND (reason UPLOAD_NOT_FOUND).",
      security,
      request: { params: UploadParams },
      responses: { 200: json(UploadStatus), ...errors(404) },
    }),
    (c) => {
      const { vm_id, upload_id } = c.req.valid("param");
      const row = svc.rows.ownedVm(account(c), vm_id);
      return c.json(uploads.status(uploads.get(account(c), row.id, upload_id)), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v5/vms/{vm_id}/fs/uploads/{upload_id}/commit",
      summary: "Verify an upload and replace the file (v5)",
      description:
        "Needs every byte (else 409 FILES_BAD_REQUEST, reason UPLOAD_INCOMPLETE). The bytes' SHA-256 is checked against the declared `sha256`, and the chunks are checked against the bytes that arrived while they stream into the file (written atomically as root, creating missing parent directories); either mismatch answers 400 FILES_BAD_REQUEST (reason SHA256_MISMATCH), keeps the old file and ends the upload. Answers 204 and ends the upload.",
      security,
      request: { params: UploadParams, body: { content: { "application/json": { schema: z.object({}) } }, required: false } },
      responses: { 204: { description: "Written" }, ...errors(400, 404, 409) },
    }),
    async (c) => {
      const { vm_id, upload_id } = c.req.valid("param");
      const acc = account(c);
      await svc.gateway.withVm(acc, vm_id, FILES, (vm, guest) => uploads.commit(uploads.get(acc, vm.id, upload_id), guest));
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({
      method: "delete",
      path: "/v5/vms/{vm_id}/fs/uploads/{upload_id}",
      summary: "Abort an upload (v5)",
      description: "Ends the upload and removes its chunks from the VM (a stopped or suspended VM is not woken for this: its next upload removes them). Answers 204.",
      security,
      request: { params: UploadParams },
      responses: { 204: { description: "Aborted" }, ...errors(404) },
    }),
    async (c) => {
      const { vm_id, upload_id } = c.req.valid("param");
      const row = svc.rows.ownedVm(account(c), vm_id);
      await uploads.abort(uploads.get(account(c), row.id, upload_id));
      return c.body(null, 204);
    },
  );
}

/**
 * `PUT /v5/vms/{vm_id}/fs/write?path=&mode=&sha256=`: the body's raw bytes streamed to the guest,
 * written atomically (the agent's temp file + rename), as root. With `sha256`, the digest is
 * checked when the body ends, before the agent is told the upload is complete, so a mismatch
 * leaves the old file in place.
 * @module
 */
import { createHash } from "node:crypto";
import { pipeline, Transform } from "node:stream";
import { createRoute } from "@hono/zod-openapi";
import { WriteFileQuery } from "@capsule/contract/v5";
import type { App, Deps } from "../../context.js";
import { ApiError } from "../../errors.js";
import { guestPath } from "../../guest-path.js";
import { requestBody } from "../../request-body.js";
import { VmParams } from "../../schemas.js";
import { account, errors, security } from "../common.js";

/** The write route's path: app.ts exempts it from the JSON body limit (the VM's disk is the limit). */
export const V5_WRITE_PATH = /^\/v5\/vms\/[^/]+\/fs\/write$/;

/** 0.2's default mode for a file that does not exist yet. */
const NEW_FILE_MODE = 0o600;

/** Passes the bytes through and fails at their end if their SHA-256 is not `expected`. */
export class Sha256Check extends Transform {
  readonly #hash = createHash("sha256");
  /** Set when the digest did not match; the write's own error then names the connection, not this. */
  mismatch: ApiError | undefined;

  constructor(private readonly expected: string) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null, data?: Buffer) => void): void {
    this.#hash.update(chunk);
    done(null, chunk);
  }

  override _flush(done: (err?: Error | null) => void): void {
    const got = this.#hash.digest("hex");
    if (got === this.expected.toLowerCase()) return done();
    this.mismatch = new ApiError("FILES_BAD_REQUEST", `the body's sha256 is ${got}, not ${this.expected}: nothing was written`, undefined, { reason: "SHA256_MISMATCH" });
    done(this.mismatch);
  }
}

export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "put",
      path: "/v5/vms/{vm_id}/fs/write",
      summary: "Write a file's bytes (v5)",
      description:
        "Body: the file's bytes (`application/octet-stream`), streamed to the guest; no limit beyond the VM's disk. Written atomically as root, creating missing parent directories. `mode` is DECIMAL (493 = 0o755); without it the file keeps its mode, and a new one gets 0o600. With `sha256`, a body whose digest differs answers 400 FILES_BAD_REQUEST (`reason: SHA256_MISMATCH`) and writes nothing. Answers 204.",
      security,
      request: { params: VmParams, query: WriteFileQuery },
      responses: { 204: { description: "Written" }, ...errors(400, 404) },
    }),
    async (c) => {
      const { vm_id } = c.req.valid("param");
      const q = c.req.valid("query");
      const path = guestPath(q.path);
      await svc.gateway.withVm(account(c), vm_id, { badRequest: "FILES_BAD_REQUEST" }, async (_vm, guest) => {
        const mode = q.mode !== undefined ? Number(q.mode) : (await guest.exists(path, {})) ? undefined : NEW_FILE_MODE;
        const source = requestBody(c);
        const check = q.sha256 !== undefined ? new Sha256Check(q.sha256) : undefined;
        const input = check ? pipeline(source, check, () => undefined) : source;
        try {
          await guest.writeFile(path, input, { mkdirs: true, ...(mode !== undefined ? { mode } : {}) });
        } catch (err) {
          source.destroy();
          throw check?.mismatch ?? err;
        }
      });
      return c.body(null, 204);
    },
  );
}

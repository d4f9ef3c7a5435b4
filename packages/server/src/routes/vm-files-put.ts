import { createRoute, z } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { decodeContent, guestPath } from "../guest-path.js";
import { FileParams, LinuxUserHeader, WriteFileRequest } from "../schemas.js";
import { account, errors, json, linuxUser, security } from "./common.js";

/** Writes atomically, creating missing parent directories, owned by the header's user (root without it). */
export function register(app: App, { svc, limits }: Deps): void {
  app.openapi(
    createRoute({
      method: "put",
      path: "/v1/vms/{vm_id}/files/{filepath}",
      summary: "Write a file",
      description: `Body \`{content, encoding: "base64"}\` (or \`"utf8"\`). The whole request is limited to ${limits.maxBodyBytes} bytes (about ${Math.floor((limits.maxBodyBytes * 3) / 4 / 1024 / 1024)} MiB of file after base64).`,
      security,
      request: { params: FileParams, headers: LinuxUserHeader, body: { content: { "application/json": { schema: WriteFileRequest } }, required: true } },
      responses: { 200: json(z.object({})), ...errors(400, 404, 413) },
    }),
    async (c) => {
      const { vm_id, filepath } = c.req.valid("param");
      const body = c.req.valid("json");
      const path = guestPath(filepath);
      const data = decodeContent(body.content, body.encoding);
      const user = linuxUser(c);
      await svc.gateway.withVm(account(c), vm_id, { badRequest: "FILES_BAD_REQUEST" }, (_vm, guest) => guest.writeFile(path, data, { mkdirs: true, ...(user ? { user } : {}) }));
      return c.json({}, 200);
    },
  );
}

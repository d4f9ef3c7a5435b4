import { createRoute, z } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { ApiError, toApiError } from "../errors.js";
import { guestPath } from "../guest-path.js";
import { DirListing, FileContent, FileParams, LinuxUserHeader } from "../schemas.js";
import { account, errors, json, linuxUser, security } from "./common.js";

/** A file answers base64 content; a directory answers its entries. Read as the header's user. */
export function register(app: App, { svc, limits }: Deps): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/vms/{vm_id}/files/{filepath}",
      summary: "Read a file or list a directory",
      description: `The path is one percent-encoded segment (\`/\` as \`%2F\`), absolute, without \`..\`. Files up to ${limits.maxReadFileBytes} bytes.`,
      security,
      request: { params: FileParams, headers: LinuxUserHeader },
      responses: { 200: json(z.union([FileContent, DirListing])), ...errors(400, 404, 413) },
    }),
    async (c) => {
      const { vm_id, filepath } = c.req.valid("param");
      const path = guestPath(filepath);
      const id = await svc.ensureRunning(account(c), vm_id);
      const release = svc.activity.hold(id);
      const user = linuxUser(c);
      const as = user ? { user } : {};
      try {
        const st = await svc.engine.guest.stat(id, path, as);
        if (st.kind === "directory") {
          const entries = await svc.engine.guest.list(id, path, as);
          return c.json({ files: entries.map((e) => ({ name: e.name, kind: e.kind === "directory" ? ("directory" as const) : ("file" as const) })) }, 200);
        }
        if (st.size > limits.maxReadFileBytes) {
          throw new ApiError("FILES_BAD_REQUEST", `${path} is ${st.size} bytes; the files API reads up to ${limits.maxReadFileBytes} bytes (use exec or the exec stream for larger files)`, 413);
        }
        const data = await svc.engine.guest.readFile(id, path, as);
        return c.json({ content: data.toString("base64"), encoding: "base64" as const }, 200);
      } catch (err) {
        throw toApiError(err, "FILES_BAD_REQUEST");
      } finally {
        release();
      }
    },
  );
}

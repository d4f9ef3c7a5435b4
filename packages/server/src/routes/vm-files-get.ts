import { createRoute, z } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { ApiError } from "../errors.js";
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
      const user = linuxUser(c);
      const as = user ? { user } : {};
      const answer = await svc.gateway.withVm(account(c), vm_id, { badRequest: "FILES_BAD_REQUEST" }, async (_vm, guest) => {
        const st = await guest.stat(path, as);
        if (st.kind === "directory") {
          const entries = await guest.list(path, as);
          return { files: entries.map((e) => ({ name: e.name, kind: e.kind === "directory" ? ("directory" as const) : ("file" as const) })) };
        }
        const tooLarge = (size: string) =>
          new ApiError("FILES_BAD_REQUEST", `${path} is ${size} bytes; the files API reads up to ${limits.maxReadFileBytes} bytes (use files-raw, exec or the exec stream for larger files)`, 413);
        if (st.size > limits.maxReadFileBytes) throw tooLarge(String(st.size));
        // The stat was of the path itself (a symlink's own size) and the guest may change the file
        // between the two calls: the limit applies to the bytes actually read, never more.
        const data = await guest.readFile(path, { ...as, length: limits.maxReadFileBytes + 1 });
        if (data.length > limits.maxReadFileBytes) throw tooLarge("more than " + String(limits.maxReadFileBytes));
        return { content: data.toString("base64"), encoding: "base64" as const };
      });
      return c.json(answer, 200);
    },
  );
}

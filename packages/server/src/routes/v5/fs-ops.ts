/**
 * The v5 filesystem calls besides read and write, over the agent's file operations, as root:
 * `GET fs/dir`, `POST fs/mkdir` (recursive, like `mkdir -p`), `DELETE fs/remove` (recursive),
 * `GET fs/exists` (follows symlinks, like `test -e`) and `GET fs/stat` (the path itself).
 * @module
 */
import { createRoute } from "@hono/zod-openapi";
import { DirListing, FileStat, MkdirRequest, PathExists, PathQuery } from "@capsule/contract/v5";
import type { App, Deps } from "../../context.js";
import { guestPath } from "../../guest-path.js";
import type { VmGuest } from "../../guest/gateway.js";
import { VmParams } from "../../schemas.js";
import { account, errors, json, security } from "../common.js";

/** The most of the guest's /etc/passwd or /etc/group read to name an owner: the guest may grow them. */
const MAX_ID_TABLE_BYTES = 1024 * 1024;

/** The guest's /etc/passwd or /etc/group as text; empty when it cannot be read (the ids are shown then). */
async function idTable(guest: VmGuest, table: "/etc/passwd" | "/etc/group"): Promise<string> {
  return (await guest.readFile(table, { length: MAX_ID_TABLE_BYTES }).catch(() => Buffer.alloc(0))).toString("utf8");
}

/** The name a table gives an id, else the id itself. */
function idName(table: string, id: number): string {
  for (const line of table.split("\n")) {
    const [name, , field] = line.split(":");
    if (name && field === String(id)) return name;
  }
  return String(id);
}

export function register(app: App, { svc }: Deps): void {
  const FILES = { badRequest: "FILES_BAD_REQUEST" } as const;

  app.openapi(
    createRoute({ method: "get", path: "/v5/vms/{vm_id}/fs/dir", summary: "List a directory (v5)", description: "Entries in name order; `kind` is file, directory, symlink, or other (devices, FIFOs, sockets).", security, request: { params: VmParams, query: PathQuery }, responses: { 200: json(DirListing), ...errors(400, 404) } }),
    async (c) => {
      const path = guestPath(c.req.valid("query").path);
      const entries = await svc.gateway.withVm(account(c), c.req.valid("param").vm_id, FILES, (_vm, guest) => guest.list(path, {}));
      return c.json({ entries }, 200);
    },
  );

  app.openapi(
    createRoute({ method: "post", path: "/v5/vms/{vm_id}/fs/mkdir", summary: "Make a directory and its parents (v5)", security, request: { params: VmParams, body: { content: { "application/json": { schema: MkdirRequest } }, required: true } }, responses: { 204: { description: "Made, or already there" }, ...errors(400, 404) } }),
    async (c) => {
      const path = guestPath(c.req.valid("json").path);
      await svc.gateway.withVm(account(c), c.req.valid("param").vm_id, FILES, (_vm, guest) => guest.mkdir(path, { recursive: true }));
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({ method: "delete", path: "/v5/vms/{vm_id}/fs/remove", summary: "Remove a file or a directory tree (v5)", description: "A symlink is removed, not followed. A missing path answers 404 FILE_NOT_FOUND.", security, request: { params: VmParams, query: PathQuery }, responses: { 204: { description: "Removed" }, ...errors(400, 404) } }),
    async (c) => {
      const path = guestPath(c.req.valid("query").path);
      await svc.gateway.withVm(account(c), c.req.valid("param").vm_id, FILES, (_vm, guest) => guest.remove(path, { recursive: true }));
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({ method: "get", path: "/v5/vms/{vm_id}/fs/exists", summary: "Whether a path exists (v5)", security, request: { params: VmParams, query: PathQuery }, responses: { 200: json(PathExists), ...errors(400, 404) } }),
    async (c) => {
      const path = guestPath(c.req.valid("query").path);
      const exists = await svc.gateway.withVm(account(c), c.req.valid("param").vm_id, FILES, (_vm, guest) => guest.exists(path, {}));
      return c.json({ exists }, 200);
    },
  );

  app.openapi(
    createRoute({ method: "get", path: "/v5/vms/{vm_id}/fs/stat", summary: "Describe a path (v5)", description: "The path itself (a symlink is described as one). `permissions` is octal; `owner` and `group` are names from the VM's /etc/passwd and /etc/group, or the ids.", security, request: { params: VmParams, query: PathQuery }, responses: { 200: json(FileStat), ...errors(400, 404) } }),
    async (c) => {
      const path = guestPath(c.req.valid("query").path);
      const stat = await svc.gateway.withVm(account(c), c.req.valid("param").vm_id, FILES, async (_vm, guest) => {
        // Side by side: the tables are read whatever the stat answers, so a stat costs one round trip, not two.
        const [st, passwd, groups] = await Promise.all([guest.stat(path, {}), idTable(guest, "/etc/passwd"), idTable(guest, "/etc/group")]);
        const [owner, group] = [idName(passwd, st.uid), idName(groups, st.gid)];
        return {
          size: st.size,
          isFile: st.kind === "file",
          isDirectory: st.kind === "directory",
          isSymlink: st.kind === "symlink",
          permissions: st.mode.toString(8).padStart(4, "0"),
          owner,
          group,
          modified: new Date(st.mtimeMs).toISOString(),
        };
      });
      return c.json(stat, 200);
    },
  );
}

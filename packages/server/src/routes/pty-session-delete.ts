import { createRoute, z } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { findSession } from "../pty-sessions.js";
import { LinuxUserHeader, PtySessionParams } from "../schemas.js";
import { account, errors, json, linuxUser, security } from "./common.js";

/** Kills the session's process and forgets it. Only its own Linux user may (SESSION_USER_MISMATCH). */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "delete",
      path: "/v1/vms/{vm_id}/pty/sessions/{session_id}",
      summary: "Close a PTY session",
      security,
      request: { params: PtySessionParams, headers: LinuxUserHeader },
      responses: { 200: json(z.object({ sessionId: z.string(), exitCode: z.number().nullable() })), ...errors(400, 403, 404) },
    }),
    async (c) => {
      const { vm_id, session_id } = c.req.valid("param");
      const closed = await svc.gateway.withVm(account(c), vm_id, {}, async (_vm, guest) => {
        await findSession(guest, session_id, linuxUser(c));
        return guest.ptyClose(session_id);
      });
      return c.json(closed, 200);
    },
  );
}

import { createRoute } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { sessionView } from "../pty-sessions.js";
import { LinuxUserHeader, PtySessionList, VmParams } from "../schemas.js";
import { account, errors, json, linuxUser, security } from "./common.js";

/**
 * Running and recently exited sessions. With the Linux-user header only that user's sessions;
 * without it (root) all of them. A suspended VM is not woken for this: its sessions ended with it.
 */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/vms/{vm_id}/pty/sessions",
      summary: "List PTY sessions",
      security,
      request: { params: VmParams, headers: LinuxUserHeader },
      responses: { 200: json(PtySessionList), ...errors(404) },
    }),
    async (c) => {
      const user = linuxUser(c);
      const sessions = await svc.gateway.withVm(account(c), c.req.valid("param").vm_id, { wake: false, hold: false }, async (vm, guest) =>
        vm.running ? (await guest.ptyList()).filter((s) => !user || s.user === user) : [],
      );
      return c.json({ sessions: sessions.map(sessionView) }, 200);
    },
  );
}

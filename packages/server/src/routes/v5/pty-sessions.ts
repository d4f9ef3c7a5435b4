/**
 * `/v5` PTY sessions by number or slug (freestyle 0.2's `sessionId` / `slug`): the lookup the
 * attach socket shares, and `GET .../pty/sessions` and `DELETE .../pty/sessions/{sel}`. The
 * sessions are the agent's, the same ones `/v1` serves by their string ids; the number and slug
 * are the agent's too, so they outlive the server.
 * @module
 */
import { createRoute, z } from "@hono/zod-openapi";
import { PtyCloseResponseV5, PtySessionListV5, PtyUserQuery, type PtySessionV5 } from "@capsule/contract/v5";
import type { PtySessionInfo } from "@capsule/engine";
import type { App, Deps } from "../../context.js";
import { ApiError } from "../../errors.js";
import type { VmGuest } from "../../guest/gateway.js";
import { account, errors, json, security } from "../common.js";
import { defaultUser } from "./guest-exec.js";

/** An agent session's v5 number; an agent too old to number its sessions cannot serve /v5 PTYs. */
export function sessionNumber(s: PtySessionInfo): number {
  if (s.number === undefined) throw new ApiError("SERVICE_UNAVAILABLE", "the VM's guest agent is older than /v5 PTY sessions (it does not number them): restart the VM to give it the current agent", undefined, { reason: "AGENT_OUTDATED" });
  return s.number;
}

export function sessionViewV5(s: PtySessionInfo): PtySessionV5 {
  return {
    sessionId: sessionNumber(s),
    state: s.running ? "running" : "exited",
    createdUnix: Math.floor(Date.parse(s.createdAt) / 1000),
    cols: s.cols,
    rows: s.rows,
    ...(s.running ? {} : { exitCode: s.exitCode }),
    linuxUser: s.user,
    ...(s.slug !== undefined ? { slug: s.slug } : {}),
  };
}

/** `linuxUser`, or the VM's default user (its uid-1000 account, else root), as 0.2 documents it. */
export async function userOrDefault(guest: VmGuest, linuxUser: string | undefined): Promise<string> {
  return linuxUser ?? (await defaultUser(guest)) ?? "root";
}

/** The session a path names (a number or a slug), checked to belong to `user`. */
export async function findSessionV5(guest: VmGuest, selector: string, user: string): Promise<PtySessionInfo> {
  const sessions = await guest.ptyList();
  const byNumber = /^[0-9]{1,15}$/.test(selector);
  const s = sessions.find((x) => (byNumber ? x.number === Number(selector) : x.slug === selector));
  if (!s) throw new ApiError("SESSION_NOT_FOUND", `PTY session not found: ${selector}`);
  sessionNumber(s);
  if (s.user !== user) throw new ApiError("SESSION_USER_MISMATCH", `PTY session ${selector} belongs to another Linux user, not ${user}`);
  return s;
}

const SessionParams = z.object({ vm_id: z.string().min(1), session: z.string().min(1).max(64) });

export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/v5/vms/{vm_id}/pty/sessions",
      summary: "List PTY sessions (v5)",
      description: "Running and recently exited sessions (exited ones stay listed 5 minutes). With `linuxUser`, only that user's; without, all of them. A stopped VM is not woken for this: it has none.",
      security,
      request: { params: z.object({ vm_id: z.string().min(1) }), query: PtyUserQuery },
      responses: { 200: json(PtySessionListV5), ...errors(400, 404, 503) },
    }),
    async (c) => {
      const { linuxUser } = c.req.valid("query");
      const sessions = await svc.gateway.withVm(account(c), c.req.valid("param").vm_id, { wake: false, hold: false }, async (vm, guest) =>
        vm.running ? (await guest.ptyList()).filter((s) => linuxUser === undefined || s.user === linuxUser) : [],
      );
      return c.json({ sessions: sessions.map(sessionViewV5) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "delete",
      path: "/v5/vms/{vm_id}/pty/sessions/{session}",
      summary: "Close a PTY session (v5)",
      description: "Hangs up on the session (SIGKILL after a second), by number or slug, and answers its number and exit code. Only its own Linux user may: `linuxUser`, or the VM's default user (SESSION_USER_MISMATCH).",
      security,
      request: { params: SessionParams, query: PtyUserQuery },
      responses: { 200: json(PtyCloseResponseV5), ...errors(400, 403, 404, 503) },
    }),
    async (c) => {
      const { vm_id, session } = c.req.valid("param");
      const { linuxUser } = c.req.valid("query");
      const closed = await svc.gateway.withVm(account(c), vm_id, {}, async (_vm, guest) => {
        const s = await findSessionV5(guest, session, await userOrDefault(guest, linuxUser));
        const r = await guest.ptyClose(s.sessionId);
        return { sessionId: sessionNumber(s), exitCode: r.exitCode };
      });
      return c.json(closed, 200);
    },
  );
}

/**
 * The `/v5` PTY sockets (freestyle 0.2's `vm.pty.open` / `attach`) over the same agent sessions,
 * hold and bridge as `/v1`'s: the user comes from `?linuxUser` (default the VM's uid-1000
 * account, else root), sessions are named by their number or slug, `sessionInfo` carries both and
 * `created` and is sent on attach too, and failures are `error` frames.
 *
 * URLs: `/v5/vms/{id}/pty?exec&cols&rows&linuxUser&slug&replaceOnExit` (open, get-or-create by
 * slug) and `/v5/vms/{id}/pty/sessions/{number|slug}?linuxUser` (attach).
 * @module
 */
import type { WebSocket } from "ws";
import { PtyOpenQuery, PtyUserQuery } from "@capsule/contract/v5";
import type { PtyAttachment } from "@capsule/engine";
import type { z } from "zod";
import type { Deps } from "../context.js";
import { ApiError } from "../errors.js";
import type { Account } from "../keys.js";
import { findSessionV5, sessionNumber, userOrDefault } from "../routes/v5/pty-sessions.js";
import { holdVm } from "./hold.js";
import { bridgePty } from "./pty.js";

/** The guest side of a v5 PTY socket: the VM held, the session resolved; `start` runs after the handshake. */
export interface PreparedPtyV5 {
  release: () => void;
  start: (ws: WebSocket) => Promise<{ bind: (ws: WebSocket) => void; abort: () => void }>;
}

function query<T extends z.ZodType>(schema: T, url: URL): z.infer<T> {
  const r = schema.safeParse(Object.fromEntries(url.searchParams));
  if (!r.success) throw new ApiError("VALIDATION_ERROR", r.error.issues.map((i) => `${i.path.join(".") || "query"}: ${i.message}`).join("; "));
  return r.data;
}

/** `selector` undefined: open (`/pty`); else attach (`/pty/sessions/{selector}`). */
export async function preparePtyV5(deps: Deps, account: Account, vmId: string, url: URL, selector: string | undefined): Promise<PreparedPtyV5> {
  if (selector === undefined) return openV5(deps, account, vmId, query(PtyOpenQuery, url));
  const { linuxUser } = query(PtyUserQuery, url);
  let sessionId = "";
  let user = "";
  const { guest, release } = await holdVm(deps, account, vmId, async (g) => {
    user = await userOrDefault(g, linuxUser);
    sessionId = (await findSessionV5(g, selector, user)).sessionId;
  });
  return {
    release,
    start: async (ws) => {
      ws.pause();
      return bridgeV5(deps, await guest.ptyAttach(sessionId, { user }), false);
    },
  };
}

async function openV5(deps: Deps, account: Account, vmId: string, q: PtyOpenQuery): Promise<PreparedPtyV5> {
  let user = "";
  const { guest, release } = await holdVm(deps, account, vmId, async (g) => {
    user = await userOrDefault(g, q.linuxUser);
  });
  return {
    release,
    start: async (ws) => {
      ws.pause(); // frames that come while the session opens wait in the socket
      const pty = await guest.ptyOpen({
        cols: q.cols,
        rows: q.rows,
        user,
        ...(q.exec !== undefined ? { command: ["/bin/sh", "-c", q.exec] } : {}),
        ...(q.slug !== undefined ? { slug: q.slug } : {}),
        ...(q.replaceOnExit ? { replaceOnExit: true } : {}),
      });
      // Only an open by slug can find an existing session.
      return bridgeV5(deps, pty, q.slug === undefined || pty.created);
    },
  };
}

function bridgeV5(deps: Deps, att: PtyAttachment, created: boolean): { bind: (ws: WebSocket) => void; abort: () => void } {
  let sessionId: number;
  try {
    sessionId = sessionNumber(att.session);
  } catch (err) {
    att.detach();
    throw err;
  }
  const slug = att.session.slug;
  return bridgePty(att, { sessionInfo: { type: "sessionInfo", sessionId, ...(slug !== undefined ? { slug } : {}), created }, errorFrames: true, log: deps.log });
}

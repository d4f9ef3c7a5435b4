/**
 * PTY session lookups shared by the REST routes and the WebSocket attach: sessions live in the
 * guest agent (which keeps scrollback and the owning Linux user); the API maps them to the
 * Freestyle session shape and enforces the user rule (SESSION_USER_MISMATCH).
 * @module
 */
import type { PtySessionInfo } from "@capsule/engine";
import type { PtySessionInfo as ApiPtySessionInfo } from "@capsule/contract/schemas";
import { ApiError } from "./errors.js";
import type { VmGuest } from "./guest/gateway.js";

/** The API's session shape is the contract's `PtySessionInfo` (the engine's own type has the same name but the agent's fields). */
export type PtySessionView = ApiPtySessionInfo;

export const SESSION_ID_RE = /^[a-zA-Z0-9._-]{1,64}$/;

export function sessionView(s: PtySessionInfo): PtySessionView {
  return {
    sessionId: s.sessionId,
    running: s.running,
    exitCode: s.exitCode,
    exitedAtMs: null,
    cols: s.cols,
    rows: s.rows,
    exec: s.command.join(" "),
    createdAtMs: Date.parse(s.createdAt),
    attachedCount: s.attached,
    user: s.user,
    suspended: false,
  };
}

/** The session, checked to belong to `user` (root when undefined). Errors are mapped by the gateway. */
export async function findSession(guest: VmGuest, sessionId: string, user: string | undefined): Promise<PtySessionInfo> {
  if (!SESSION_ID_RE.test(sessionId)) throw new ApiError("INVALID_SESSION_ID", `session id must match [a-zA-Z0-9._-]{1,64}, got ${JSON.stringify(sessionId)}`);
  const sessions = await guest.ptyList();
  const s = sessions.find((x) => x.sessionId === sessionId);
  if (!s) throw new ApiError("SESSION_NOT_FOUND", `PTY session not found: ${sessionId}`);
  const as = user ?? "root";
  if (s.user !== as) throw new ApiError("SESSION_USER_MISMATCH", `PTY session ${sessionId} belongs to another Linux user, not ${as}`);
  return s;
}

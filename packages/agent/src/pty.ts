import type { PtyAttachRequest, PtyCloseRequest, PtyOpenRequest } from "@capsule/agent-protocol";
import { config } from "./config.js";
import type { Conn } from "./conn.js";
import { AgentError } from "./errors.js";
import { assertRunnable, killGroup, resolveCwd, userEnv } from "./launch.js";
import { loadNodePty, PtySession } from "./pty-session.js";
import { resolveUser } from "./users.js";

const MAX_RUNNING_SESSIONS = 64;
/** Exited sessions stay listed (with their exit code) this long, and at most this many. */
const EXITED_TTL_MS = 5 * 60_000;
const MAX_EXITED_SESSIONS = 100;

const sessions = new Map<string, PtySession>();
const exitedOrder: string[] = [];

function forget(id: string): void {
  sessions.delete(id);
  const i = exitedOrder.indexOf(id);
  if (i >= 0) exitedOrder.splice(i, 1);
}

function retire(session: PtySession): void {
  exitedOrder.push(session.id);
  setTimeout(() => forget(session.id), EXITED_TTL_MS).unref();
  while (exitedOrder.length > MAX_EXITED_SESSIONS) forget(exitedOrder[0] as string);
}

function find(sessionId: string): PtySession {
  const session = sessions.get(sessionId);
  if (!session) throw new AgentError("SESSION_NOT_FOUND", `no PTY session ${sessionId}`);
  return session;
}

function assertCapacity(): void {
  const running = [...sessions.values()].filter((s) => s.running).length;
  if (running >= MAX_RUNNING_SESSIONS) throw new AgentError("SPAWN_FAILED", `too many PTY sessions: ${running} running, the limit is ${MAX_RUNNING_SESSIONS}`);
}

/** On shutdown: a hang-up, which interactive shells pass on to their jobs. */
export function hangUpSessions(): void {
  for (const session of sessions.values()) if (session.running) killGroup(session.pid, "SIGHUP");
}

export async function openPty(conn: Conn, req: PtyOpenRequest): Promise<void> {
  assertCapacity();
  const user = await resolveUser(req.user);
  const cwd = await resolveCwd(user, req.cwd);
  // Interactive, not login: the same shell `docker exec -it` gives, reading ~/.bashrc.
  const command = req.command ?? [user.shell, "-i"];
  const env: Record<string, string> = { ...userEnv(user, undefined), LANG: "C.UTF-8", INPUTRC: config.inputrc, ...req.env };
  env.TERM = req.term ?? req.env?.TERM ?? "xterm-256color";
  await assertRunnable(command[0] as string, cwd, env.PATH);
  const pty = await loadNodePty();
  assertCapacity(); // again: other opens may have raced through the awaits above
  let session: PtySession;
  try {
    session = new PtySession(pty, user, command, { cols: req.cols, rows: req.rows, cwd, env }, retire);
  } catch (err) {
    throw new AgentError("SPAWN_FAILED", `cannot start a terminal: ${(err as Error).message}`);
  }
  sessions.set(session.id, session);
  session.attach(conn, { cols: req.cols, rows: req.rows });
}

export async function attachPty(conn: Conn, req: PtyAttachRequest): Promise<void> {
  const session = find(req.sessionId);
  const user = req.user ?? "root";
  if (session.user !== user) throw new AgentError("SESSION_USER_MISMATCH", `session ${req.sessionId} belongs to ${session.user}, not ${user}`);
  session.attach(conn, { cols: req.cols, rows: req.rows });
}

export async function listPty(conn: Conn): Promise<void> {
  conn.sendJson({ type: "sessions", sessions: [...sessions.values()].map((s) => s.info()) });
  conn.finish();
}

export async function closePty(conn: Conn, req: PtyCloseRequest): Promise<void> {
  const session = find(req.sessionId);
  await session.terminate();
  conn.sendJson({ type: "closed", sessionId: session.id, exitCode: session.info().exitCode });
  conn.finish();
}

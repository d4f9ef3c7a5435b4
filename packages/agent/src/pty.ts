import type { PtyAttachRequest, PtyCloseRequest, PtyOpenRequest } from "@capsule/agent-protocol";
import { config } from "./config.js";
import type { Conn } from "./conn.js";
import { AgentError } from "./errors.js";
import { assertRunnable, killGroup, resolveCwd, userEnv, vmEnv } from "./launch.js";
import { loadNodePty, PtySession } from "./pty-session.js";
import { resolveUser } from "./users.js";

const MAX_RUNNING_SESSIONS = 64;
/** Exited sessions stay listed (with their exit code) this long, and at most this many. */
const EXITED_TTL_MS = 5 * 60_000;
const MAX_EXITED_SESSIONS = 100;

const sessions = new Map<string, PtySession>();
const exitedOrder: string[] = [];
/** The next session's number (the Freestyle 0.2 session id): 1, 2, ... for this agent's life. */
let nextNumber = 1;

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

/** The running session named `slug`, if any. */
function runningNamed(slug: string): PtySession | undefined {
  for (const s of sessions.values()) if (s.running && s.slug === slug) return s;
  return undefined;
}

export async function openPty(conn: Conn, req: PtyOpenRequest): Promise<void> {
  // Get-or-create: decided again after the awaits below, where another open may have made it.
  if (req.slug !== undefined && attachNamed(conn, req, req.slug)) return;
  assertCapacity();
  const user = await resolveUser(req.user);
  const cwd = await resolveCwd(user, req.cwd);
  // Interactive, not login: the same shell `docker exec -it` gives, reading ~/.bashrc.
  const command = req.command ?? [user.shell, "-i"];
  const env: Record<string, string> = { ...userEnv(user, undefined), LANG: "C.UTF-8", INPUTRC: config.inputrc, ...(await vmEnv()), ...req.env };
  env.TERM = req.term ?? req.env?.TERM ?? "xterm-256color";
  await assertRunnable(command[0] as string, cwd, env.PATH);
  const pty = await loadNodePty();
  if (req.slug !== undefined && attachNamed(conn, req, req.slug)) return;
  assertCapacity(); // again: other opens may have raced through the awaits above
  let session: PtySession;
  try {
    const naming = { number: nextNumber, ...(req.slug !== undefined ? { slug: req.slug } : {}), ...(req.replaceOnExit ? { replaceOnExit: true } : {}) };
    session = new PtySession(pty, user, command, { cols: req.cols, rows: req.rows, cwd, env }, naming, retire);
  } catch (err) {
    throw new AgentError("SPAWN_FAILED", `cannot start a terminal: ${(err as Error).message}`);
  }
  nextNumber++;
  // The name moves to the new session: an exited one keeps its number, output and exit code.
  if (req.slug !== undefined) for (const s of sessions.values()) if (s.slug === req.slug) s.slug = undefined;
  sessions.set(session.id, session);
  session.attach(conn, { cols: req.cols, rows: req.rows }, true);
}

/** Attaches `conn` to the running session of the open's slug, if there is one (it must be the same user's). */
function attachNamed(conn: Conn, req: PtyOpenRequest, slug: string): boolean {
  const named = runningNamed(slug);
  if (!named) return false;
  const user = req.user ?? "root";
  if (named.user !== user) throw new AgentError("SESSION_USER_MISMATCH", `session ${slug} belongs to ${named.user}, not ${user}`);
  named.attach(conn, { cols: req.cols, rows: req.rows }, false);
  return true;
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

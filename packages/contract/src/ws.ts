/**
 * The WebSocket messages of the PTY socket (`/v1/vms/{vm_id}/pty[/sessions/{id}]`, the Freestyle
 * PTY protocol) and of Capsule's exec-stream socket (`/v1/vms/{vm_id}/exec-stream`), both ways.
 * Text frames carry these JSON messages; binary frames carry bytes:
 *
 * PTY: binary in = stdin, binary out = terminal output. The server sends `sessionInfo` first on a
 * new session, then output; `exited` then close 1000 when the process ends. Closing the socket
 * detaches; the session keeps running. Unknown text messages are ignored both ways.
 *
 * exec-stream: the client's first message is `start` (command, cwd, env, user, timeoutMs): nothing
 * runs before it, and nothing secret travels in the URL, where proxies log it. Then binary in =
 * stdin; binary out = one tag byte (`EXEC_STREAM_TAG`: 1 stdout, 2 stderr) then the bytes. The
 * server sends `started`, output, then `exit` and close 1000, or `error` and close 1011. Closing
 * the socket kills the process.
 *
 * Types are inferred, so `import type` from here loads nothing; the zod schemas are for the side
 * that parses (the server). The constants are in `./wire.js` (no imports).
 * @module
 */
import { z } from "zod";
import { API_ERROR_CODES, type ApiErrorCode } from "./errors.js";
import { ENV_NAME_RE, LINUX_USER_RE, MAX_PTY_SIZE, WS_SIGNALS } from "./wire.js";

const PtySize = z.number().int().min(1).max(MAX_PTY_SIZE);
/**
 * A signal name in any case, with or without the `SIG` prefix (`sigkill`, `SIGKILL`, `kill`):
 * freestyle 0.2 sends lower case, 0.1 upper case. The server maps it onto WS_SIGNALS through the
 * agent protocol's one signal table (`parseSignalName`); a name outside it is unknown.
 */
const Signal = z
  .string()
  .max(16)
  .meta({ description: `One of ${WS_SIGNALS.join(", ")}, in any case, the SIG prefix optional.`, examples: ["SIGINT", "sigkill"] });

// ---- PTY socket ----

/** Client → server: a new terminal size. */
export const PtyResize = z.object({ type: z.literal("resize"), cols: PtySize, rows: PtySize });
/** Client → server: SIGINT writes 0x03 (the line discipline signals the foreground group); SIGKILL kills the session. An unknown name is ignored (/v1) or answered with an `error` frame (/v5). */
export const PtySignal = z.object({ type: z.literal("signal"), signal: Signal });
export const PtyClientMessage = z.discriminatedUnion("type", [PtyResize, PtySignal]);
export type PtyClientMessage = z.infer<typeof PtyClientMessage>;

/** Server → client, first on a new session: its id (for attach). */
export const PtySessionInfoMessage = z.object({ type: z.literal("sessionInfo"), sessionId: z.string() });
/** Server → client: the process ended (128+n when killed by signal n; null when unknown); close 1000 follows. */
export const PtyExited = z.object({ type: z.literal("exited"), exitCode: z.number().int().nullable() });
export const PtyServerMessage = z.discriminatedUnion("type", [PtySessionInfoMessage, PtyExited]);
export type PtyServerMessage = z.infer<typeof PtyServerMessage>;

// ---- exec-stream socket ----

/**
 * Client → server, first: what to run. `command` runs through /bin/sh -c; `env` is added to the
 * process's environment; `user` overrides the Linux-user header. The server waits a bounded time
 * for it and starts nothing before it.
 */
export const ExecStart = z.object({
  type: z.literal("start"),
  command: z.string().min(1),
  cwd: z.string().startsWith("/").optional(),
  env: z.record(z.string().regex(ENV_NAME_RE), z.string()).optional(),
  user: z.string().regex(LINUX_USER_RE).optional(),
  timeoutMs: z.number().int().positive().optional(),
});
export type ExecStart = z.infer<typeof ExecStart>;

/** Client → server: close the process's stdin. */
export const ExecEof = z.object({ type: z.literal("eof") });
/** Client → server: signal the process; an absent or unknown signal means SIGKILL. */
export const ExecKill = z.object({
  type: z.literal("kill"),
  // `.catch` has no JSON Schema of its own: the meta gives the one a sender should follow.
  signal: Signal.optional().meta({ description: `One of ${WS_SIGNALS.join(", ")}, in any case, the SIG prefix optional. Default SIGKILL (also for an unknown signal).` }),
});
export const ExecClientMessage = z.discriminatedUnion("type", [ExecStart, ExecEof, ExecKill]);
export type ExecClientMessage = z.infer<typeof ExecClientMessage>;

/** Server → client, first: the process started. */
export const ExecStarted = z.object({ type: z.literal("started"), pid: z.number().int() });
/** Server → client, after all output: how it ended; close 1000 follows. */
export const ExecExit = z.object({
  type: z.literal("exit"),
  /** 128+n when killed by signal n; null when unknown. */
  exitCode: z.number().int().nullable(),
  signal: z.string().nullable(),
  /** Killed because it ran past `timeoutMs`. */
  timedOut: z.boolean(),
});
/** Server → client: the exec failed (a registry code); close 1011 follows. */
export const ExecError = z.object({
  type: z.literal("error"),
  code: z.enum(API_ERROR_CODES as [ApiErrorCode, ...ApiErrorCode[]]),
  message: z.string(),
});
export const ExecServerMessage = z.discriminatedUnion("type", [ExecStarted, ExecExit, ExecError]);
export type ExecServerMessage = z.infer<typeof ExecServerMessage>;

/**
 * Parses one text frame with `schema`; undefined when it is not JSON or not a valid message
 * (callers ignore those, as the protocol says).
 */
export function parseWsMessage<T>(schema: z.ZodType<T>, text: string): T | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  const r = schema.safeParse(raw);
  return r.success ? r.data : undefined;
}

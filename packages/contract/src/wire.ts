/**
 * Wire constants shared by the server and its clients, with no imports (the SDK loads this
 * without zod). The message shapes are in `@capsule/contract/ws`.
 * @module
 */

/** The request's Linux user inside the VM (absent: root). Lower case, as Node's HTTP stack reports it. */
export const LINUX_USER_HEADER = "x-freestyle-vm-linux-user-id";

/** First byte of a binary exec-stream frame from the server: which stream the rest belongs to. */
export const EXEC_STREAM_TAG = { stdout: 1, stderr: 2 } as const;

/** Signals a client may send over the PTY (`signal`) and exec-stream (`kill`) sockets. */
export const WS_SIGNALS = ["SIGINT", "SIGTERM", "SIGKILL", "SIGHUP"] as const;
export type WsSignal = (typeof WS_SIGNALS)[number];

/** A shell variable name, as exec-stream `env` keys must be. */
export const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** A Linux user name (the Linux-user header, exec-stream `user`). */
export const LINUX_USER_RE = /^[a-z_][a-z0-9_-]{0,31}\$?$/;

/** Close codes of the PTY and exec-stream sockets. */
export const WS_CLOSE = {
  /** The process exited; its `exited` / `exit` message came first. */
  EXITED: 1000,
  /** The socket's API key was revoked or its console session ended. */
  POLICY: 1008,
  /** The server lost the guest end (VM stopped) or the exec failed (an `error` message came first). */
  FAILED: 1011,
} as const;

/** The largest terminal size accepted in a PTY `resize` message or query. */
export const MAX_PTY_SIZE = 10_000;

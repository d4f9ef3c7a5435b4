import type { ServiceReply, ServiceRequest } from "./services.js";
import type { SignalName } from "./signals.js";

/** Bumped whenever the protocol changes in a way the host must know about. */
export const AGENT_PROTOCOL_VERSION = 1;

/** Path of the agent's socket inside the VM. The directory is root-only (mode 0700). */
export const AGENT_SOCKET_DIR_IN_VM = "/.capsule-run";
export const AGENT_SOCKET_NAME = "agent.sock";
/**
 * The VM's default working directory (a spec's `workdir`): one absolute path in this file, on
 * the VM's own disk so it travels with its snapshots. An exec or PTY without a cwd starts there.
 */
export const DEFAULT_WORKDIR_FILE_IN_VM = "/etc/capsule/workdir";
/**
 * The VM's environment (a Dockerfile's ENV): a JSON object of strings, on the VM's disk like the
 * workdir. Every exec, PTY and service gets it, under what the request itself sets.
 */
export const DEFAULT_ENV_FILE_IN_VM = "/etc/capsule/env.json";

/** Who a request acts as. Absent means root. */
export interface AsUser {
  /** Linux user name inside the VM; the agent resolves uid, gid, groups and HOME from /etc/passwd and /etc/group. */
  user?: string;
}

export interface ExecRequest extends AsUser {
  op: "exec";
  /** Run through `/bin/sh -c`. */
  command: string;
  cwd?: string;
  /** Added to (and overriding) the default environment. */
  env?: Record<string, string>;
  /** Kill the whole process group after this long. Absent or 0: no timeout. */
  timeoutMs?: number;
}

export interface PtyOpenRequest extends AsUser {
  op: "pty.open";
  /** argv; default: the user's login shell, interactive. */
  command?: string[];
  cols: number;
  rows: number;
  cwd?: string;
  env?: Record<string, string>;
  /** TERM for the session; default `xterm-256color`. */
  term?: string;
  /**
   * Get-or-create by name ({@link PTY_SLUG_RE}): a running session of that name is attached
   * instead (the reply's `created` is false, nothing is started). A new session takes the name
   * from an exited one.
   */
  slug?: string;
  /** Respawn the command in place (same session, number, name and scrollback) when it exits, unless it died within a second of its start. */
  replaceOnExit?: boolean;
}

export interface PtyAttachRequest extends AsUser {
  op: "pty.attach";
  sessionId: string;
  cols?: number;
  rows?: number;
}

export interface PtyListRequest {
  op: "pty.list";
}

export interface PtyCloseRequest {
  op: "pty.close";
  sessionId: string;
}

export interface FsReadRequest extends AsUser {
  op: "fs.read";
  path: string;
  offset?: number;
  /** Bytes to read; absent: to the end. */
  length?: number;
}

export interface FsWriteRequest extends AsUser {
  op: "fs.write";
  path: string;
  /** Octal permission bits, e.g. 0o644. Default 0o644 (new files) or the existing file's mode. */
  mode?: number;
  /** Create missing parent directories. */
  mkdirs?: boolean;
}

export interface FsPathRequest extends AsUser {
  op: "fs.stat" | "fs.list" | "fs.exists";
  path: string;
}

export interface FsMkdirRequest extends AsUser {
  op: "fs.mkdir";
  path: string;
  recursive?: boolean;
  mode?: number;
}

export interface FsRemoveRequest extends AsUser {
  op: "fs.remove";
  path: string;
  recursive?: boolean;
}

export interface SimpleRequest {
  op: "version" | "sync";
}

/**
 * The file whose appearance beside the agent's socket (in the host's run dir of the VM) tells an
 * agent made deaf by `ckpt.prepare` that the checkpoint is over: the host writes it into the
 * original VM's run dir once `runsc checkpoint` returned, and into a restored VM's run dir before
 * its restore. gVisor gives the guest no event at either moment, so the agent polls for it.
 */
export const CKPT_RESUME_MARKER = "ckpt-resume";
/** How long an agent made deaf by `ckpt.prepare` waits for the marker by default, and at most. */
export const DEFAULT_CKPT_DEAF_MS = 10_000;
export const MAX_CKPT_DEAF_MS = 120_000;

/**
 * Before a memory checkpoint: runsc refuses to save a listening host socket or an open host
 * connection, so after its `ok` the agent closes its listener and every host connection (PTY
 * sessions, services and running commands go on; a command's output from then on is dropped),
 * and listens again once {@link CKPT_RESUME_MARKER} appears, or after `deafMs`
 * (default {@link DEFAULT_CKPT_DEAF_MS}) on its own, so a host that died mid-checkpoint leaves no
 * deaf VM.
 */
export interface CkptPrepareRequest {
  op: "ckpt.prepare";
  deafMs?: number;
}

/** Lowest and highest TCP port a `tcp.connect` may name. */
export const MIN_TCP_PORT = 1;
export const MAX_TCP_PORT = 65535;

/**
 * Opens a TCP connection to a port of the VM's loopback (dev servers often listen on localhost
 * only). After the agent's `ok` the connection stops being framed: it carries the TCP stream's
 * raw bytes both ways, and a close or half-close on either side goes through.
 */
export interface TcpConnectRequest {
  op: "tcp.connect";
  port: number;
}

export type Request =
  | ExecRequest
  | PtyOpenRequest
  | PtyAttachRequest
  | PtyListRequest
  | PtyCloseRequest
  | FsReadRequest
  | FsWriteRequest
  | FsPathRequest
  | FsMkdirRequest
  | FsRemoveRequest
  | ServiceRequest
  | TcpConnectRequest
  | CkptPrepareRequest
  | SimpleRequest;

/** Host → agent control messages during an `exec`. */
export type ExecControl = { type: "signal"; signal: SignalName };

/** Host → agent control messages during a PTY attach. */
export type PtyControl =
  | { type: "resize"; cols: number; rows: number }
  | { type: "signal"; signal: SignalName };

export interface ErrorReply {
  type: "error";
  code: AgentErrorCode;
  message: string;
}

/** Every code an agent's {@link ErrorReply} may carry; a reply with any other is a protocol error. */
export const AGENT_ERROR_CODES = [
  "BAD_REQUEST",
  "USER_NOT_FOUND",
  "FILE_NOT_FOUND",
  "PERMISSION_DENIED",
  "IS_A_DIRECTORY",
  "NOT_A_DIRECTORY",
  "ALREADY_EXISTS",
  "DIRECTORY_NOT_EMPTY",
  "SESSION_NOT_FOUND",
  "SESSION_USER_MISMATCH",
  /** A `svc.*` op named a service the VM does not have. */
  "SERVICE_NOT_FOUND",
  "SPAWN_FAILED",
  /** The guest is out of processes or memory (fork/exec got EAGAIN or ENOMEM): worth retrying later. */
  "RESOURCE_EXHAUSTED",
  /** `tcp.connect`: nothing listens on that port in the VM. */
  "CONNECTION_REFUSED",
  /** `tcp.connect`: the connection was not established within the agent's connect limit. */
  "CONNECT_TIMEOUT",
  "INTERNAL",
] as const;
export type AgentErrorCode = (typeof AGENT_ERROR_CODES)[number];

/**
 * What an agent can do beyond its protocol version: fields of an existing op (an older agent
 * ignores an unknown field), and ops the host must know are there before it acts on them.
 */
export const AGENT_FEATURES = {
  /** `readySignal` and `watchdogSec` in `svc.define` (sd_notify). */
  serviceNotify: "svc.notify",
  /** `ckpt.prepare`: asked before a checkpoint, so an older agent is refused before the VM is touched. */
  checkpoint: "ckpt.prepare",
} as const;

export interface VersionReply {
  type: "version";
  version: string;
  protocol: number;
  pid: number;
  /** {@link AGENT_FEATURES} values it has; absent from agents older than the list. */
  features?: string[];
}

export interface ExitReply {
  type: "exit";
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  signal: string | null;
  /** True when the agent killed the process group because `timeoutMs` passed. */
  timedOut?: boolean;
}

export const FILE_KINDS = ["file", "directory", "symlink", "other"] as const;
export type FileKind = (typeof FILE_KINDS)[number];

export interface StatInfo {
  kind: FileKind;
  size: number;
  /** Permission bits (e.g. 0o644). */
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
}

export interface DirEntry {
  name: string;
  kind: FileKind;
}

/** A PTY session's name: lower-case letters, digits and inner hyphens, not all digits (a number is a session's `number`). */
export const PTY_SLUG_RE = /^(?![0-9]+$)[a-z0-9](?:-?[a-z0-9])*$/;
export const MAX_PTY_SLUG_LENGTH = 63;

export interface PtySessionInfo {
  sessionId: string;
  /**
   * Small per-VM number, from 1 in the order sessions were opened since the agent started (the
   * Freestyle 0.2 session id). Absent from agents older than it.
   */
  number?: number;
  /** Its name, while it holds one. */
  slug?: string;
  replaceOnExit?: boolean;
  user: string;
  command: string[];
  cols: number;
  rows: number;
  pid: number;
  running: boolean;
  exitCode: number | null;
  createdAt: string;
  /** Connections attached right now. */
  attached: number;
}

export type Reply =
  | ErrorReply
  | VersionReply
  | ExitReply
  | { type: "started"; pid: number }
  | { type: "session"; session: PtySessionInfo; /** false when a `pty.open` found its slug's running session. */ created?: boolean }
  | { type: "sessions"; sessions: PtySessionInfo[] }
  | { type: "closed"; sessionId: string; exitCode: number | null }
  | { type: "stat"; stat: StatInfo }
  | { type: "list"; entries: DirEntry[] }
  | { type: "exists"; exists: boolean }
  | ServiceReply
  | { type: "ok"; size?: number };

/**
 * `vm.spawn()`: one process in the VM with live pipes, over the server's streaming exec
 * WebSocket (`/v1/vms/{id}/exec-stream`). stdin/stdout/stderr are Node streams with
 * backpressure; ending stdin delivers EOF to the process. What to run (command, cwd, env, user,
 * timeout) is the socket's first message, never the URL: env values are often secrets, and
 * proxies log URLs.
 * @module
 */
import { Readable, Writable } from "node:stream";
import { ENV_NAME_RE, EXEC_STREAM_TAG, type WsSignal } from "@capsule/contract/wire";
import type { ExecClientMessage } from "@capsule/contract/ws";
import type WebSocket from "ws";
import { makeError, type CapsuleError } from "./errors.js";
import { seg, type Transport } from "./transport.js";

/** Options of `vm.spawn()`. */
export interface SpawnOptions {
  /** Linux user to run as. Default: the handle's user (`vm.user()`), else root. */
  user?: string;
  /** Absolute working directory. Default `/`. */
  cwd?: string;
  /** Extra environment variables of the process (sent as data, never in a URL). */
  env?: Record<string, string>;
  /** Kill the process after this many milliseconds (`exited` then has `timedOut: true`). Default: no limit. */
  timeoutMs?: number;
}

/** How a spawned process ended. */
export interface SpawnExit {
  /** Exit status; 128+n when killed by signal n. */
  code: number | null;
  /** The signal that ended it, e.g. `SIGKILL`, or null. */
  signal: string | null;
  /** True when `timeoutMs` killed it. */
  timedOut: boolean;
}

/** Signals `kill()` can send. */
export type SpawnSignal = WsSignal;

/** A running process in the VM. */
export interface SpawnedProcess {
  /** The process's stdin; `end()` closes it (EOF). */
  readonly stdin: Writable;
  /** The process's stdout bytes. */
  readonly stdout: Readable;
  /** The process's stderr bytes. */
  readonly stderr: Readable;
  /** Resolves with the pid once the process runs in the VM; rejects when it could not start. */
  readonly started: Promise<{ pid: number }>;
  /** Resolves when the process ended (after all its output was delivered); rejects on errors. */
  readonly exited: Promise<SpawnExit>;
  /** Sends a signal to the process. Default SIGKILL. */
  kill(signal?: SpawnSignal): void;
}

/** @internal */
export function spawnProcess(t: Transport, vmId: string, command: string, opts: SpawnOptions, handleUser: string | undefined): SpawnedProcess {
  for (const k of Object.keys(opts.env ?? {})) {
    if (!ENV_NAME_RE.test(k)) throw makeError("VALIDATION_ERROR", `env name ${JSON.stringify(k)} is not a valid variable name`);
  }
  const user = opts.user ?? handleUser;
  const start = {
    type: "start",
    command,
    ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
    ...(opts.env && Object.keys(opts.env).length > 0 ? { env: opts.env } : {}),
    ...(user ? { user } : {}),
    ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
  } satisfies ExecClientMessage;

  let ws: WebSocket | undefined;
  let finished = false;
  const waiters: Array<() => void> = [];
  const paused = new Set<Readable>();
  const stdout = new Readable({ read: () => resume(stdout) });
  const stderr = new Readable({ read: () => resume(stderr) });
  function resume(s: Readable) {
    paused.delete(s);
    if (paused.size === 0) ws?.resume();
  }

  let startedResolve!: (v: { pid: number }) => void;
  let startedReject!: (e: unknown) => void;
  const started = new Promise<{ pid: number }>((res, rej) => ((startedResolve = res), (startedReject = rej)));
  let exitResolve!: (v: SpawnExit) => void;
  let exitReject!: (e: unknown) => void;
  const exited = new Promise<SpawnExit>((res, rej) => ((exitResolve = res), (exitReject = rej)));
  // Callers that only await `exited` must not get an unhandled rejection from `started`.
  started.catch(() => undefined);

  const fail = (err: CapsuleError) => {
    if (finished) return;
    finished = true;
    startedReject(err);
    exitReject(err);
    // The error goes to `started`/`exited`; the streams just end (no 'error' event to crash on).
    stdout.push(null);
    stderr.push(null);
    stdin.destroy();
  };

  const onMessage = (data: Buffer, isBinary: boolean) => {
    if (isBinary) {
      const target = data[0] === EXEC_STREAM_TAG.stderr ? stderr : stdout;
      if (!target.push(data.subarray(1))) {
        paused.add(target);
        ws?.pause();
      }
      return;
    }
    let msg: { type?: string; pid?: number; exitCode?: number | null; signal?: string | null; timedOut?: boolean; code?: string; message?: string };
    try {
      msg = JSON.parse(data.toString("utf8")) as typeof msg;
    } catch {
      return;
    }
    if (msg.type === "started") startedResolve({ pid: msg.pid ?? 0 });
    else if (msg.type === "exit") {
      finished = true;
      stdout.push(null);
      stderr.push(null);
      startedResolve({ pid: 0 });
      exitResolve({ code: msg.exitCode ?? null, signal: msg.signal ?? null, timedOut: msg.timedOut ?? false });
    } else if (msg.type === "error") {
      fail(makeError(msg.code ?? "INTERNAL_ERROR", msg.message ?? "the process failed"));
    }
  };

  const stdin = new Writable({
    write(chunk: Buffer, _enc, cb) {
      const go = () => {
        if (!ws || finished) return cb(); // the process is gone: drop input, like a closed pipe
        ws.send(chunk, { binary: true }, (err) => cb(err ?? undefined));
      };
      if (ws) go();
      else waiters.push(go);
    },
    final(cb) {
      const go = () => {
        if (ws && !finished) ws.send(JSON.stringify({ type: "eof" } satisfies ExecClientMessage), () => cb());
        else cb();
      };
      if (ws) go();
      else waiters.push(go);
    },
  });
  // Writes after the process exited are dropped; a destroyed stdin must not crash the caller.
  stdin.on("error", () => undefined);

  t.websocket(`/v1/vms/${seg(vmId)}/exec-stream`, {}, user, onMessage).then(
    (socket) => {
      ws = socket;
      socket.send(JSON.stringify(start)); // first: the server starts the process on it
      socket.on("close", (code: number) => {
        if (!finished) fail(makeError("CONNECTION_LOST", `exec stream closed (code ${code}) before the process exited`));
      });
      socket.on("error", () => undefined);
      for (const w of waiters.splice(0)) w();
    },
    (err: CapsuleError) => {
      fail(err);
      for (const w of waiters.splice(0)) w();
    },
  );

  return {
    stdin,
    stdout,
    stderr,
    started,
    exited,
    kill(signal: SpawnSignal = "SIGKILL") {
      const go = () => {
        if (ws && !finished && ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: "kill", signal } satisfies ExecClientMessage));
      };
      if (ws) go();
      else waiters.push(go);
    },
  };
}

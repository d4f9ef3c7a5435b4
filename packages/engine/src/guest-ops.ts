import { EventEmitter } from "node:events";
import type net from "node:net";
import { PassThrough, type Readable, type Writable } from "node:stream";
import {
  AGENT_FEATURES,
  MAX_SERVICE_STOP_GRACE_MS,
  SERVICE_SETTLE_WAIT_MS,
  type DirEntry,
  type PtyControl,
  type PtySessionInfo,
  type Reply,
  type ServiceAction,
  type ServiceLogEntry,
  type ServiceSpec,
  type ServiceStatus,
  type SignalName,
  type StatInfo,
} from "@capsule/agent-protocol";
import { AGENT_DEADLINES, agentError, protocolError, stdinWritable, type AgentClient, type AgentConn } from "./agent/client.js";
import type { EngineError } from "./errors.js";

/**
 * Refuses an agent whose version reply does not list `feature` as such an agent answers an op it
 * lacks, which the API turns into its 501 AGENT_OUTDATED.
 */
async function requireFeature(agent: AgentClient, feature: string): Promise<void> {
  const { features } = await agent.call({ op: "version" }, "version");
  if (!features?.includes(feature)) throw agentError({ type: "error", code: "BAD_REQUEST", message: `unknown op ${JSON.stringify(feature)}` }) as EngineError;
}

export interface ExecOpts {
  /** Run through `/bin/sh -c` inside the VM. */
  command: string;
  /** Linux user in the VM; default root. */
  user?: string;
  cwd?: string;
  env?: Record<string, string>;
  /** Kill the command's whole process group after this long. Default: no timeout. */
  timeoutMs?: number;
}

export interface BufferedExecOpts extends ExecOpts {
  /** Output kept per stream; the rest is dropped and `truncated` set. Default 64 MiB. */
  maxOutputBytes?: number;
  /** Aborting kills the command's process group (e.g. when the API client went away). */
  signal?: AbortSignal;
}

export interface ExitInfo {
  /** Exit code, or null when the process died of a signal. */
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
}

export interface ExecResult extends ExitInfo {
  stdout: string;
  stderr: string;
  truncated: boolean;
}

/** A process running in a VM, with real pipes: stdin (end() is EOF), stdout, stderr. */
export interface GuestProcess {
  pid: number;
  stdin: Writable;
  stdout: Readable;
  stderr: Readable;
  exited: Promise<ExitInfo>;
  kill(signal?: SignalName): void;
}

export interface PtyOpenOpts {
  cols?: number;
  rows?: number;
  user?: string;
  /** argv; default: the user's login shell. */
  command?: string[];
  cwd?: string;
  env?: Record<string, string>;
  /** Default `xterm-256color`. */
  term?: string;
  /** Get-or-create by this name: a running session of it is attached instead ({@link PtyAttachment.created} false). */
  slug?: string;
  /** Respawn the command in place when it exits (see the agent protocol's `pty.open`). */
  replaceOnExit?: boolean;
}

/**
 * One attachment to a PTY session. Events: `data` (Buffer of terminal output; the first one
 * after attach is the scrollback), `exit` (exit code or null, signal name or null), `close`
 * (the attachment ended — after exit, detach or a lost connection).
 *
 * The scrollback can arrive in the same read as the session reply, before the caller has the
 * attachment; so events are held until the caller subscribes to any of them, then delivered in
 * order on the next microtask (listeners added in the same tick all see them).
 */
export class PtyAttachment extends EventEmitter {
  #held: Array<[string, unknown[]]> | undefined = [];

  constructor(
    readonly session: PtySessionInfo,
    readonly conn: AgentConn,
    /** False when an open by slug found that session running (an attach is never a creation). */
    readonly created = false,
  ) {
    super();
    conn.on("stdout", (b: Buffer) => this.#deliver("data", [b]));
    conn.on("json", (r: Reply) => {
      if (r.type === "exit") this.#deliver("exit", [r.code, r.signal]);
    });
    conn.once("close", () => this.#deliver("close", []));
    this.on("newListener", (event: string) => {
      if (this.#held && (event === "data" || event === "exit" || event === "close")) queueMicrotask(() => this.#flush());
    });
  }

  #deliver(event: string, args: unknown[]): void {
    if (this.#held) this.#held.push([event, args]);
    else this.emit(event, ...args);
  }

  #flush(): void {
    const held = this.#held;
    this.#held = undefined;
    for (const [event, args] of held ?? []) this.emit(event, ...args);
  }

  write(data: Buffer | string): Promise<void> {
    return this.conn.sendData(typeof data === "string" ? Buffer.from(data, "utf8") : data);
  }
  resize(cols: number, rows: number): void {
    this.conn.sendJson({ type: "resize", cols, rows } satisfies PtyControl);
  }
  signal(signal: SignalName): void {
    this.conn.sendJson({ type: "signal", signal } satisfies PtyControl);
  }
  /** Flow control: stop reading terminal output (the agent then stops sending) until resume(). */
  pause(): void {
    this.conn.pause();
  }
  resume(): void {
    this.conn.resume();
  }
  /** Ends this attachment; the session keeps running. */
  detach(): void {
    this.conn.close();
  }
}

/**
 * How long a service op that starts or stops services may take to answer: a restart is a stop
 * (at most its grace) and a start (at most the agent's settle wait), plus a margin.
 */
const SERVICE_REPLY_MS = MAX_SERVICE_STOP_GRACE_MS + SERVICE_SETTLE_WAIT_MS + 10_000;

/** Exec, PTY, file and service operations inside a running VM, through its agent. */
export class GuestOps {
  constructor(private readonly agentOf: (vmId: string) => Promise<AgentClient>) {}

  async spawn(vmId: string, opts: ExecOpts): Promise<GuestProcess> {
    const { conn, ...proc } = await this.#start(vmId, opts, false);
    return { ...proc, stdin: stdinWritable(conn) };
  }

  /** Starts a command; with `noInput` its stdin is at EOF from the start (the Eof goes with the request). */
  async #start(vmId: string, opts: ExecOpts, noInput: boolean): Promise<Omit<GuestProcess, "stdin"> & { conn: AgentConn }> {
    const conn = await (await this.agentOf(vmId)).open({ op: "exec", ...opts }, { eof: noInput });
    const stdout = new PassThrough({ highWaterMark: 1 << 20 });
    const stderr = new PassThrough({ highWaterMark: 1 << 20 });
    const pipe = (out: PassThrough) => (chunk: Buffer) => {
      if (!out.write(chunk)) {
        conn.pause();
        out.once("drain", () => conn.resume());
      }
    };
    conn.on("stdout", pipe(stdout));
    conn.on("stderr", pipe(stderr));
    // Consumers that never read stderr must not stall stdout: keep it flowing once piped nowhere.
    let exitInfo: ExitInfo | undefined;
    let replies = 0;
    const exited = new Promise<ExitInfo>((resolve, reject) => {
      conn.on("json", (r: Reply) => {
        replies++;
        if (replies === 1) return; // `started` or an error, handled below
        if (r.type !== "exit" || exitInfo) return conn.fail(protocolError(`it sent ${r.type} during an exec`));
        exitInfo = { exitCode: r.code, signal: r.signal, timedOut: r.timedOut ?? false };
        // `exit` follows the last byte of output, so nothing more is owed: hang up ourselves.
        conn.close();
      });
      conn.once("close", () => {
        stdout.end();
        stderr.end();
        if (exitInfo) resolve(exitInfo);
        else reject(conn.closeError(`lost the connection to VM ${vmId} before the process exited`));
      });
    });
    exited.catch(() => undefined);
    const started = await new Promise<Reply>((resolve, reject) => {
      const onClose = () => reject(conn.closeError("agent closed the connection before starting the process"));
      conn.once("close", onClose);
      conn.once("json", (r: Reply) => {
        conn.off("close", onClose);
        resolve(r);
      });
    });
    const err = agentError(started) ?? (started.type === "started" ? undefined : protocolError(`it answered ${started.type} to exec`));
    if (err || started.type !== "started") {
      conn.close();
      throw err;
    }
    if (opts.timeoutMs) {
      // The agent kills the command at timeoutMs; a host must not wait on a guest that does not.
      const ms = opts.timeoutMs + AGENT_DEADLINES.execGraceMs;
      const cancel = conn.deadline(ms, `the VM's agent did not end the command within its ${opts.timeoutMs} ms timeout (waited ${ms} ms)`);
      conn.once("close", cancel);
    }
    return {
      conn,
      pid: started.pid,
      stdout,
      stderr,
      exited,
      kill: (signal = "SIGKILL") => void conn.sendJson({ type: "signal", signal }),
    };
  }

  async exec(vmId: string, opts: BufferedExecOpts): Promise<ExecResult> {
    const { maxOutputBytes = 64 * 1024 * 1024, signal, ...execOpts } = opts;
    signal?.throwIfAborted();
    const proc = await this.#start(vmId, execOpts, true);
    const onAbort = () => proc.kill("SIGKILL");
    signal?.addEventListener("abort", onAbort, { once: true });
    proc.exited.finally(() => signal?.removeEventListener("abort", onAbort)).catch(() => undefined);
    let truncated = false;
    const collect = (stream: Readable) =>
      new Promise<string>((resolve) => {
        const chunks: Buffer[] = [];
        let size = 0;
        stream.on("data", (c: Buffer) => {
          if (size + c.length > maxOutputBytes) {
            truncated = true;
            c = c.subarray(0, Math.max(0, maxOutputBytes - size));
          }
          size += c.length;
          if (c.length > 0) chunks.push(c);
        });
        stream.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
      });
    const [stdout, stderr, exit] = await Promise.all([collect(proc.stdout), collect(proc.stderr), proc.exited]);
    return { stdout, stderr, ...exit, truncated };
  }

  async ptyOpen(vmId: string, opts: PtyOpenOpts = {}): Promise<PtyAttachment> {
    const conn = await (await this.agentOf(vmId)).open({
      op: "pty.open",
      cols: opts.cols ?? 80,
      rows: opts.rows ?? 24,
      ...(opts.user !== undefined ? { user: opts.user } : {}),
      ...(opts.command !== undefined ? { command: opts.command } : {}),
      ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
      ...(opts.env !== undefined ? { env: opts.env } : {}),
      ...(opts.term !== undefined ? { term: opts.term } : {}),
      ...(opts.slug !== undefined ? { slug: opts.slug } : {}),
      ...(opts.replaceOnExit ? { replaceOnExit: true } : {}),
    });
    return this.#attachment(conn);
  }

  async ptyAttach(vmId: string, sessionId: string, opts: { user?: string; cols?: number; rows?: number } = {}): Promise<PtyAttachment> {
    const conn = await (await this.agentOf(vmId)).open({ op: "pty.attach", sessionId, ...opts });
    return this.#attachment(conn);
  }

  async ptyList(vmId: string): Promise<PtySessionInfo[]> {
    return (await (await this.agentOf(vmId)).call({ op: "pty.list" }, "sessions")).sessions;
  }

  async ptyClose(vmId: string, sessionId: string): Promise<{ sessionId: string; exitCode: number | null }> {
    const r = await (await this.agentOf(vmId)).call({ op: "pty.close", sessionId }, "closed");
    return { sessionId: r.sessionId, exitCode: r.exitCode };
  }

  // ---------------------------------------------------------------- services

  /**
   * Stores service definitions in the VM (ALREADY_EXISTS for a name it has, unless `replace`);
   * with `start`, starts the enabled ones and answers once they settled (or the agent's wait ran out).
   */
  async serviceDefine(vmId: string, services: ServiceSpec[], opts: { replace: boolean; start: boolean }): Promise<ServiceStatus[]> {
    const agent = await this.agentOf(vmId);
    // An agent older than sd_notify would store these fields' service as a plain one.
    if (services.some((s) => s.readySignal === true || (s.watchdogSec ?? 0) > 0)) await requireFeature(agent, AGENT_FEATURES.serviceNotify);
    return (await agent.call({ op: "svc.define", services, ...opts }, "services", SERVICE_REPLY_MS)).services;
  }

  async serviceSpec(vmId: string, name: string): Promise<ServiceSpec> {
    return (await (await this.agentOf(vmId)).call({ op: "svc.get", name }, "service.spec")).service;
  }

  async serviceList(vmId: string): Promise<ServiceStatus[]> {
    return (await (await this.agentOf(vmId)).call({ op: "svc.list" }, "services")).services;
  }

  async serviceStatus(vmId: string, name: string): Promise<ServiceStatus> {
    return (await (await this.agentOf(vmId)).call({ op: "svc.status", name }, "service")).status;
  }

  async serviceControl(vmId: string, name: string, action: ServiceAction): Promise<ServiceStatus> {
    return (await (await this.agentOf(vmId)).call({ op: "svc.control", name, action }, "service", SERVICE_REPLY_MS)).status;
  }

  /** Stops the service, then removes its definition and logs. */
  async serviceDelete(vmId: string, name: string): Promise<void> {
    await (await this.agentOf(vmId)).call({ op: "svc.delete", name }, "ok", SERVICE_REPLY_MS);
  }

  async serviceLogs(vmId: string, name: string, opts: { lines?: number; sinceMs?: number } = {}): Promise<ServiceLogEntry[]> {
    return (await (await this.agentOf(vmId)).call({ op: "svc.logs", name, ...opts }, "logs")).entries;
  }

  /** The session reply arrives before any output, so it is read before handing the attachment out. */
  #attachment(conn: AgentConn): Promise<PtyAttachment> {
    return new Promise((resolve, reject) => {
      conn.once("json", (r: Reply) => {
        const err = agentError(r);
        if (err || r.type !== "session") {
          conn.close();
          reject(err ?? protocolError(`it answered ${r.type} to a PTY request`));
        } else resolve(new PtyAttachment(r.session, conn, r.created ?? false));
      });
      conn.once("close", () => reject(conn.closeError("agent closed the PTY connection")));
    });
  }

  // ---------------------------------------------------------------- files

  async readFileStream(vmId: string, path: string, opts: { user?: string; offset?: number; length?: number } = {}): Promise<{ size: number; stream: Readable }> {
    return (await this.agentOf(vmId)).readStream({ op: "fs.read", path, ...opts });
  }

  async readFile(vmId: string, path: string, opts: { user?: string; offset?: number; length?: number } = {}): Promise<Buffer> {
    const { stream } = await this.readFileStream(vmId, path, opts);
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  /** Writes atomically (temp file + rename in the VM). `data` may be a stream of any size. */
  async writeFile(vmId: string, path: string, data: Buffer | string | Readable, opts: { user?: string; mode?: number; mkdirs?: boolean } = {}): Promise<number> {
    const source = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    return (await this.agentOf(vmId)).writeStream({ op: "fs.write", path, ...opts }, source);
  }

  async stat(vmId: string, path: string, opts: { user?: string } = {}): Promise<StatInfo> {
    return (await (await this.agentOf(vmId)).call({ op: "fs.stat", path, ...opts }, "stat")).stat;
  }

  async list(vmId: string, path: string, opts: { user?: string } = {}): Promise<DirEntry[]> {
    return (await (await this.agentOf(vmId)).call({ op: "fs.list", path, ...opts }, "list")).entries;
  }

  async exists(vmId: string, path: string, opts: { user?: string } = {}): Promise<boolean> {
    return (await (await this.agentOf(vmId)).call({ op: "fs.exists", path, ...opts }, "exists")).exists;
  }

  async mkdir(vmId: string, path: string, opts: { user?: string; recursive?: boolean; mode?: number } = {}): Promise<void> {
    await (await this.agentOf(vmId)).call({ op: "fs.mkdir", path, ...opts }, "ok");
  }

  async remove(vmId: string, path: string, opts: { user?: string; recursive?: boolean } = {}): Promise<void> {
    await (await this.agentOf(vmId)).call({ op: "fs.remove", path, ...opts }, "ok");
  }

  /**
   * A TCP connection to `port` on the VM's loopback, through its agent (the host never dials the
   * VM's network): a net.Socket carrying the stream's bytes, paused until read or piped. Nothing
   * listening is an AGENT_ERROR with agentCode CONNECTION_REFUSED.
   */
  async connectTcp(vmId: string, port: number): Promise<net.Socket> {
    return (await this.agentOf(vmId)).tunnel(port);
  }

  /**
   * Makes the VM's agent let go of every host socket before a memory checkpoint (the protocol's
   * `ckpt.prepare`). An agent older than the op is refused as for any op it lacks (the API's 501
   * AGENT_OUTDATED), before it is asked anything else.
   */
  async checkpointPrepare(vmId: string, opts: { deafMs?: number } = {}): Promise<void> {
    const agent = await this.agentOf(vmId);
    await requireFeature(agent, AGENT_FEATURES.checkpoint);
    await agent.prepareCheckpoint(opts.deafMs);
  }

  async agentVersion(vmId: string): Promise<{ version: string; protocol: number }> {
    const r = await (await this.agentOf(vmId)).hello();
    return { version: r.version, protocol: r.protocol };
  }
}

import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { config } from "../config.js";
import { AgentError } from "../errors.js";
import { resolveUser } from "../users.js";
import { startServiceProcess, type ServiceProcess } from "./process.js";

/**
 * sd_notify for services: each run of a service with `readySignal` or `watchdogSec` gets its own
 * datagram socket, held by the spawn helper's `--notify` mode (native/notify.c; Node has no unix
 * datagram sockets), which hands every datagram over as a record. The directory is root's, the
 * socket the service user's with mode 0600: only that user and root can send to it.
 */
export const NOTIFY_DIR = process.env.CAPSULE_NOTIFY_DIR ?? "/run/capsule/notify";
/** The relay's datagram limit (MAX_DATAGRAM in notify.c): a record claiming more is a broken relay. */
export const MAX_NOTIFY_DATAGRAM = 4096;
/** How long the relay may take to bind its socket before the start fails. */
const BIND_TIMEOUT_MS = 5_000;
/** STATUS= text kept (and logged) per message, in characters. */
export const MAX_STATUS_CHARS = 256;
const RECORD_HEAD_BYTES = 8;

/** What one datagram says, in the sd_notify keys the supervisor acts on; anything else is ignored. */
export interface NotifyMessage {
  ready?: true;
  stopping?: true;
  status?: string;
  /** WATCHDOG=1 pings; WATCHDOG=trigger fails the service now. */
  watchdog?: "ping" | "trigger";
  /** WATCHDOG_USEC=: a new watchdog limit, in microseconds. */
  watchdogUsec?: number;
  /** MAINPID= was given (it is ignored: the main process is the one the supervisor started). */
  mainPid?: true;
}

/**
 * Parses one datagram: `KEY=VALUE` lines, as sd_notify(3) sends them. The service is tenant
 * code, so nothing here trusts it: the datagram is at most MAX_NOTIFY_DATAGRAM bytes, unknown
 * keys and malformed lines are skipped, STATUS= is cut and stripped of control characters.
 */
export function parseNotify(payload: Buffer): NotifyMessage {
  const msg: NotifyMessage = {};
  for (const line of payload.toString("utf8").split("\n")) {
    const eq = line.indexOf("=");
    if (eq <= 0) continue;
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    switch (key) {
      case "READY":
        if (value === "1") msg.ready = true;
        break;
      case "STOPPING":
        if (value === "1") msg.stopping = true;
        break;
      case "STATUS":
        // eslint-disable-next-line no-control-regex -- control characters are what is removed
        msg.status = value.replace(/[\u0000-\u001f\u007f-\u009f]/g, " ").slice(0, MAX_STATUS_CHARS);
        break;
      case "WATCHDOG":
        if (value === "1") msg.watchdog = "ping";
        else if (value === "trigger") msg.watchdog = "trigger";
        break;
      case "WATCHDOG_USEC":
        if (/^[1-9]\d{0,15}$/.test(value)) msg.watchdogUsec = Number(value);
        break;
      case "MAINPID":
        msg.mainPid = true;
        break;
    }
  }
  return msg;
}

/**
 * Splits the relay's output into records ([u32 LE length][i32 LE pid][bytes]). Throws on a
 * record longer than the relay can send: that is no relay of ours.
 */
export class RecordReader {
  #buf: Buffer = Buffer.alloc(0);

  constructor(private readonly emit: (pid: number, payload: Buffer) => void) {}

  push(chunk: Buffer): void {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    while (this.#buf.length >= RECORD_HEAD_BYTES) {
      const length = this.#buf.readUInt32LE(0);
      if (length > MAX_NOTIFY_DATAGRAM) throw new Error(`the notify relay sent a record of ${length} bytes`);
      if (this.#buf.length < RECORD_HEAD_BYTES + length) break;
      const pid = this.#buf.readInt32LE(4);
      const payload = this.#buf.subarray(RECORD_HEAD_BYTES, RECORD_HEAD_BYTES + length);
      this.#buf = this.#buf.subarray(RECORD_HEAD_BYTES + length);
      this.emit(pid, payload);
    }
  }
}

/** The session a process belongs to (field 6 of /proc/PID/stat), or undefined when it is gone. */
export function sessionOf(pid: number): number | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, "latin1");
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may hold anything, ")" included.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const session = Number(fields[3]);
  return Number.isInteger(session) ? session : undefined;
}

/** A socket path short enough for sun_path (108 bytes) whatever the service's name (up to 128). */
function socketPath(serviceName: string): string {
  return path.join(NOTIFY_DIR, `${createHash("sha256").update(serviceName).digest("hex").slice(0, 24)}.sock`);
}

/** One run's notify socket: its path (the service's NOTIFY_SOCKET) and its relay. */
export class NotifySocket {
  private constructor(
    readonly path: string,
    /** The relay's output: paused while the service's log lags, like the service's own output. */
    readonly relay: ServiceProcess,
  ) {}

  /**
   * Binds the socket for a service running as `uid` and calls `onMessage` with each datagram
   * and its sender's pid (0 when the kernel gave none).
   */
  static async open(serviceName: string, uid: number, onMessage: (pid: number, msg: NotifyMessage) => void): Promise<NotifySocket> {
    await fs.promises.mkdir(NOTIFY_DIR, { recursive: true, mode: 0o755 });
    // mkdir leaves a directory that was already there as it was: one a user of the VM could
    // write to (or own) would let them swap the socket under root's bind and chown.
    const dir = await fs.promises.lstat(NOTIFY_DIR);
    if (!dir.isDirectory() || dir.uid !== 0 || (dir.mode & 0o022) !== 0) throw new Error(`${NOTIFY_DIR} must be a directory of root's that no one else may write to`);
    const file = socketPath(serviceName);
    const relay = await startServiceProcess(await resolveUser("root"), [config.spawnHelper, "--notify", file, String(uid)], {}, "/");
    const socket = new NotifySocket(file, relay);
    let bound: () => void;
    const isBound = new Promise<void>((resolve) => (bound = resolve));
    let first = true;
    const reader = new RecordReader((pid, payload) => {
      if (first) {
        first = false;
        return bound();
      }
      onMessage(pid, parseNotify(payload));
    });
    relay.stdout.on("data", (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch {
        socket.close();
      }
    });
    let stderr = "";
    relay.stderr.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-512)));
    let timer: NodeJS.Timeout | undefined;
    const failed = Promise.race([
      relay.exited.then(() => `it exited: ${stderr.trim()}`),
      new Promise<string>((resolve) => (timer = setTimeout(() => resolve(`it did not bind within ${BIND_TIMEOUT_MS} ms`), BIND_TIMEOUT_MS))),
    ]);
    const problem = await Promise.race([isBound.then(() => undefined), failed]);
    clearTimeout(timer);
    if (problem !== undefined) {
      socket.close();
      throw new AgentError("SPAWN_FAILED", `the notify socket ${file}: ${problem}`);
    }
    return socket;
  }

  /** Ends the relay and removes the socket: a later datagram to the path finds nobody. */
  close(): void {
    this.relay.signalGroup("SIGKILL");
    // At once: the next run binds the same path, and a late removal would take its socket.
    fs.rmSync(this.path, { force: true });
  }
}

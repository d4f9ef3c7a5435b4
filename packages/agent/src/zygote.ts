import { spawn, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import { Writable } from "node:stream";
import { signalName } from "@capsule/agent-protocol";
import { config } from "./config.js";
import { AgentError } from "./errors.js";
import { log } from "./log.js";
import type { UserInfo } from "./users.js";

/**
 * Client of the fork server (`capsule-spawn --server`, native/zygote.c). Inside gVisor a fork
 * of this Node process costs 60-110 ms; the small static zygote starts a command in a few. Each
 * spawn uses a slot: `P id` (the zygote makes three FIFOs) → we open our ends (stdout/stderr for
 * reading, non-blocking; stdin read-write so the child's open never blocks) and wrap them as
 * streams. A slot is prepared ahead (at start-up and whenever a command ends), so a spawn is
 * usually one round trip: `S …` (the child opens its ends, becomes the user, execs) →
 * `S id pid` → … → `X pid code signal` when it ends.
 */

/**
 * The parts of a ChildProcess the exec and service code use: `exit` when the process ended,
 * `close` after it and the end of output (which a process it left behind may hold open).
 */
export interface Spawned extends EventEmitter {
  readonly pid: number;
  readonly stdin: Writable;
  readonly stdout: net.Socket;
  readonly stderr: net.Socket;
}

type Reply = { kind: "P" | "S" | "F"; id: string; rest: string[] };

class Zygote {
  readonly #proc: ChildProcess;
  readonly #dir: string;
  #buf = "";
  #nextId = 0;
  #dead = false;
  readonly #waiting = new Map<string, (r: Reply) => void>();
  readonly #exits = new Map<number, (code: number | null, signal: NodeJS.Signals | null) => void>();
  /** Exits that arrived before their spawn was registered (a command that ends at once). */
  readonly #early = new Map<number, [number | null, NodeJS.Signals | null]>();
  /** The slot the next spawn takes, prepared ahead (see the module comment). */
  #spare: Promise<Slot> | undefined;
  /** No slot is prepared ahead while a checkpoint may be running ({@link dropSpare}). */
  #noSpare = false;

  constructor(proc: ChildProcess, dir: string) {
    this.#proc = proc;
    this.#dir = dir;
    proc.stdout?.setEncoding("utf8");
    proc.stdout?.on("data", (text: string) => this.#onData(text));
    proc.on("exit", (code, signal) => {
      this.#dead = true;
      log(`zygote exited (${code ?? signal}); spawning falls back to Node`);
      for (const w of this.#waiting.values()) w({ kind: "F", id: "", rest: ["0", "zygote-died"] });
      this.#waiting.clear();
      this.#spare?.then((slot) => slot.destroy(), () => undefined);
      this.#spare = undefined;
      if (zygote === this) zygote = undefined;
    });
    proc.stdin?.on("error", () => undefined);
    this.#refill();
  }

  /**
   * Closes the prepared slot and removes its FIFOs, and prepares none ahead until
   * {@link prepareSpare} (a spawn in between makes its own).
   */
  dropSpare(): void {
    this.#noSpare = true;
    const spare = this.#spare;
    this.#spare = undefined;
    spare?.then(
      (slot) => {
        slot.destroy();
        for (const fd of [0, 1, 2]) fs.rmSync(`${this.#dir}/${slot.id}.${fd}`, { force: true });
      },
      () => undefined,
    );
  }

  prepareSpare(): void {
    this.#noSpare = false;
    this.#refill();
  }

  /** Prepares the next spawn's slot, unless one is; one that fails is retried by the spawn that finds it. */
  #refill(): void {
    if (this.#dead || this.#spare || this.#noSpare) return;
    this.#spare = this.#prepare();
    this.#spare.catch(() => undefined);
  }

  #onData(text: string): void {
    this.#buf += text;
    let nl: number;
    while ((nl = this.#buf.indexOf("\n")) >= 0) {
      const [kind = "", ...rest] = this.#buf.slice(0, nl).split(" ");
      this.#buf = this.#buf.slice(nl + 1);
      if (kind === "X") {
        const pid = Number(rest[0]);
        const code = Number(rest[1]);
        const result: [number | null, NodeJS.Signals | null] = code < 0 ? [null, signalName(Number(rest[2])) ?? "SIGKILL"] : [code, null];
        const done = this.#exits.get(pid);
        if (done) {
          this.#exits.delete(pid);
          done(...result);
        } else this.#early.set(pid, result);
      } else if (kind === "P" || kind === "S" || kind === "F") {
        const id = rest[0] ?? "";
        const w = this.#waiting.get(id);
        this.#waiting.delete(id);
        w?.({ kind, id, rest: rest.slice(1) });
      }
    }
  }

  #request(fields: string[]): Promise<Reply> {
    if (this.#dead) return Promise.resolve({ kind: "F", id: "", rest: ["0", "zygote-died"] });
    const id = fields[1] ?? "";
    const payload = Buffer.from(fields.map((f) => `${f}\0`).join(""), "utf8");
    const header = Buffer.alloc(4);
    header.writeUInt32LE(payload.length, 0);
    return new Promise((resolve) => {
      this.#waiting.set(id, resolve);
      this.#proc.stdin?.write(Buffer.concat([header, payload]));
    });
  }

  async spawn(user: UserInfo, argv: string[], env: Record<string, string>, cwd: string): Promise<Spawned> {
    for (const s of [...argv, cwd, ...Object.entries(env).flat()]) {
      if (s.includes("\0")) throw new AgentError("BAD_REQUEST", "arguments and environment must not contain NUL bytes");
    }
    const slot = await this.#takeSlot(argv[0] ?? "");
    const envList = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    const groups = user.groups.length > 0 ? user.groups.join(",") : "-";
    const starting = this.#request(["S", slot.id, String(user.uid), String(user.gid), groups, cwd, String(envList.length), ...envList, ...argv]);
    const started = await starting;
    if (started.kind !== "S") {
      this.#refill();
      slot.destroy();
      throw failure(started, argv[0] ?? "");
    }
    return this.#handle(Number(started.rest[0]), slot);
  }

  /** The prepared slot, or a new one when there is none or it failed (its failure is past). */
  async #takeSlot(program: string): Promise<Slot> {
    const spare = this.#spare;
    this.#spare = undefined;
    const slot = await spare?.catch(() => undefined);
    if (slot) return slot;
    return this.#prepare().catch((err: unknown) => {
      throw err instanceof PrepareFailed ? failure(err.reply, program) : err;
    });
  }

  /** Asks the zygote for FIFOs and opens our ends of them. */
  async #prepare(): Promise<Slot> {
    const id = String(++this.#nextId);
    const prepared = await this.#request(["P", id]);
    if (prepared.kind !== "P") throw new PrepareFailed(prepared);
    const path = (fd: number) => `${this.#dir}/${id}.${fd}`;
    const { O_RDONLY, O_RDWR, O_NONBLOCK } = fs.constants;
    const fds: number[] = [];
    try {
      for (const [fd, mode] of [[1, O_RDONLY], [2, O_RDONLY], [0, O_RDWR]] as const) fds.push(fs.openSync(path(fd), mode | O_NONBLOCK));
    } catch (err) {
      for (const fd of fds) fs.closeSync(fd);
      throw err;
    }
    const [outFd, errFd, inFd] = fds as [number, number, number];
    return new Slot(id, inFd, outFd, errFd);
  }

  #handle(pid: number, slot: Slot): Spawned {
    const { stdin, stdout, stderr } = slot;
    const proc = Object.assign(new EventEmitter(), { pid, stdin, stdout, stderr }) as Spawned;
    let exit: [number | null, NodeJS.Signals | null] | undefined;
    let outputsClosed = false;
    const maybeClose = () => {
      if (!exit || !outputsClosed) return;
      stdin.destroy();
      // A quick command may be over before the caller has this handle: tell it on a later turn.
      // The next slot is prepared only now, so its work does not slow this command down.
      const [code, signal] = exit;
      setImmediate(() => {
        proc.emit("close", code, signal);
        this.#refill();
      });
    };
    slot.onOutputsClosed(() => {
      outputsClosed = true;
      maybeClose();
    });
    const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
      exit = [code, signal];
      slot.closeStdin();
      setImmediate(() => proc.emit("exit", code, signal)); // queued before maybeClose's close
      maybeClose();
    };
    const early = this.#early.get(pid);
    if (early) {
      this.#early.delete(pid);
      onExit(...early);
    } else this.#exits.set(pid, onExit);
    return proc;
  }
}

/** A `P` the zygote refused; reported as the spawn's failure by whichever spawn takes the slot. */
class PrepareFailed extends Error {
  constructor(readonly reply: Reply) {
    super(`zygote: P failed (${reply.rest.join(" ")})`);
  }
}

/**
 * Our ends of one command's FIFOs, wrapped as streams before the command exists. Nothing is read
 * before a writer opens a FIFO: a FIFO's reader sees end-of-file only once a writer has come and
 * gone. A quick command's output can end before its `S` reply is handled, so the slot itself
 * watches for the ends of stdout and stderr from the start.
 */
class Slot {
  readonly stdout: net.Socket;
  readonly stderr: net.Socket;
  readonly stdin: Writable;
  readonly #inSock: net.Socket;
  #openOutputs = 2;
  #outputsClosed: (() => void) | undefined;

  constructor(
    readonly id: string,
    inFd: number,
    outFd: number,
    errFd: number,
  ) {
    this.stdout = new net.Socket({ fd: outFd, readable: true, writable: false });
    this.stderr = new net.Socket({ fd: errFd, readable: true, writable: false });
    for (const out of [this.stdout, this.stderr]) {
      out.once("close", () => {
        if (--this.#openOutputs === 0) this.#outputsClosed?.();
      });
    }
    const inSock = new net.Socket({ fd: inFd, readable: false, writable: true });
    this.#inSock = inSock;
    inSock.on("error", () => undefined); // the command may exit without reading its input
    // A FIFO cannot be shut down like a socket: EOF is closing our (only) writer once flushed.
    this.stdin = new Writable({
      write: (chunk: Buffer, _enc, cb) => void inSock.write(chunk, () => cb()),
      final: (cb) => {
        if (inSock.writableLength === 0) inSock.destroy();
        else inSock.once("drain", () => inSock.destroy());
        cb();
      },
      destroy: (_err, cb) => {
        inSock.destroy();
        cb(null);
      },
    });
  }

  /** Runs `callback` once stdout and stderr have both closed (now, if they have). */
  onOutputsClosed(callback: () => void): void {
    if (this.#openOutputs === 0) callback();
    else this.#outputsClosed = callback;
  }

  /** The command has exited: nothing will read its stdin any more. */
  closeStdin(): void {
    this.#inSock.destroy();
  }

  destroy(): void {
    this.stdout.destroy();
    this.stderr.destroy();
    this.stdin.destroy();
  }
}

/** fork/exec errno names that mean "the VM is full right now", not "this command is wrong". */
export const OUT_OF_RESOURCES = new Set(["EAGAIN", "ENOMEM"]);

function failure(r: Reply, program: string): AgentError {
  const errno = Number(r.rest[0]);
  const stage = r.rest[1] ?? "spawn";
  const reason = Object.entries(os.constants.errno).find(([, n]) => n === errno)?.[0] ?? `errno ${errno}`;
  if (stage === "exec" && reason === "ENOENT") return new AgentError("SPAWN_FAILED", `${program}: no such executable in the VM`);
  if (stage === "chdir") return new AgentError("FILE_NOT_FOUND", `working directory: ${reason}`);
  if (OUT_OF_RESOURCES.has(reason)) return new AgentError("RESOURCE_EXHAUSTED", `cannot start ${program} (${stage}: ${reason}): the VM is out of processes or memory`);
  return new AgentError("SPAWN_FAILED", `cannot start ${program} (${stage}: ${reason})`);
}

let zygote: Zygote | undefined;

/** Starts the fork server; without it (or once it died) callers fall back to Node's spawn. */
export function startZygote(): void {
  if (config.fifoDir === "off") return;
  try {
    fs.rmSync(config.fifoDir, { recursive: true, force: true });
    fs.mkdirSync(config.fifoDir, { recursive: true, mode: 0o700 });
    const proc = spawn(config.spawnHelper, ["--server", config.fifoDir], { stdio: ["pipe", "pipe", "inherit"] });
    proc.on("error", (err) => log(`zygote failed to start: ${err.message}`));
    zygote = new Zygote(proc, config.fifoDir);
  } catch (err) {
    log(`zygote unavailable: ${(err as Error).message}`);
  }
}

/** Before a checkpoint: no FIFO of a prepared slot stays open (see checkpoint.ts). */
export function dropSpareSlot(): void {
  zygote?.dropSpare();
}

/** After a checkpoint: the next spawn finds its slot ready again. */
export function prepareSpareSlot(): void {
  zygote?.prepareSpare();
}

/** Spawns through the zygote; undefined when there is none (use Node's spawn then). */
export function zygoteSpawn(user: UserInfo, argv: string[], env: Record<string, string>, cwd: string): Promise<Spawned> | undefined {
  return zygote?.spawn(user, argv, env, cwd);
}

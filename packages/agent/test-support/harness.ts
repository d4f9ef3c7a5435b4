import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { FrameDecoder, FrameType, encodeFrame, encodeJson, type ExitReply, type Frame, type Reply, type Request } from "@capsule/agent-protocol";

/** packages/agent, from dist/test-support/harness.js. */
const PACKAGE_DIR = fileURLToPath(new URL("../../", import.meta.url));
const FRAME_TIMEOUT_MS = 10_000;

export interface Agent {
  socket: string;
  /** A scratch directory removed by {@link Agent.stop}. */
  dir: string;
  stop(): Promise<void>;
}

async function waitForSocket(socket: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`agent exited with ${child.exitCode}`);
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(socket, () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    if (up) return;
    await sleep(50);
  }
  throw new Error("agent did not start listening");
}

/** Compiles capsule-spawn and runs the agent from dist/ on this host, on a private socket. */
export async function startAgent(extraEnv: Record<string, string> = {}): Promise<Agent> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "capsule-agent-test-"));
  const socket = path.join(dir, "run", "agent.sock");
  const helper = path.join(dir, "capsule-spawn");
  execFileSync(process.execPath, [path.join(PACKAGE_DIR, "scripts/compile-helper.mjs"), helper], { stdio: "inherit" });
  const child = spawn(process.execPath, [path.join(PACKAGE_DIR, "dist/src/main.js")], {
    env: {
      PATH: process.env.PATH,
      CAPSULE_AGENT_SOCKET: socket,
      CAPSULE_SPAWN_HELPER: helper,
      CAPSULE_INPUTRC: path.join(PACKAGE_DIR, "inputrc"),
      CAPSULE_CANARY: "agent-env-must-not-leak",
      ...extraEnv,
    },
    stdio: ["ignore", "inherit", "pipe"],
  });
  let log = "";
  child.stderr?.on("data", (chunk: Buffer) => (log += chunk.toString()));
  const stop = async () => {
    if (child.exitCode === null) {
      child.kill("SIGTERM");
      await new Promise((resolve) => child.once("exit", resolve));
    }
    if (/uncaught|unhandled|internal error/.test(log)) process.stderr.write(`agent log:\n${log}`);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForSocket(socket, child);
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n${log}`);
  }
  return { socket, dir, stop };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A raw protocol connection with a queue of received frames. */
export class Client {
  readonly #sock: net.Socket;
  readonly #frames: Frame[] = [];
  #waiter: (() => void) | undefined;
  #ended = false;
  readonly closed: Promise<void>;

  private constructor(sock: net.Socket) {
    this.#sock = sock;
    const decoder = new FrameDecoder();
    sock.on("data", (chunk: Buffer) => {
      this.#frames.push(...decoder.push(chunk));
      this.#waiter?.();
    });
    sock.on("error", () => undefined);
    this.closed = new Promise((resolve) =>
      sock.once("close", () => {
        this.#ended = true;
        this.#waiter?.();
        resolve();
      }),
    );
  }

  static connect(socket: string): Promise<Client> {
    return new Promise((resolve, reject) => {
      const sock = net.connect(socket, () => resolve(new Client(sock)));
      sock.once("error", reject);
    });
  }

  static async open(socket: string, req: Request): Promise<Client> {
    const client = await Client.connect(socket);
    client.sendJson(req);
    return client;
  }

  /** The next frame; rejects when the connection ends first or nothing comes in time. */
  async next(timeoutMs = FRAME_TIMEOUT_MS): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const frame = this.#frames.shift();
      if (frame) return frame;
      if (this.#ended) throw new Error("connection closed");
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("timed out waiting for a frame");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  async json(timeoutMs?: number): Promise<Reply> {
    const frame = await this.next(timeoutMs);
    if (frame.type !== FrameType.Json) throw new Error(`expected a JSON frame, got type ${frame.type}`);
    return JSON.parse(frame.payload.toString("utf8")) as Reply;
  }

  /** Collects terminal output until it matches; returns everything collected. */
  async output(pattern: RegExp, timeoutMs = FRAME_TIMEOUT_MS): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let text = "";
    while (!pattern.test(text)) {
      const frame = await this.next(Math.max(1, deadline - Date.now())).catch((err: Error) => {
        throw new Error(`${err.message}; output so far: ${JSON.stringify(text)}`);
      });
      if (frame.type === FrameType.Json) throw new Error(`unexpected reply ${frame.payload.toString()} while waiting for ${pattern}`);
      text += frame.payload.toString("utf8");
    }
    return text;
  }

  sendJson(value: unknown): void {
    this.#sock.write(encodeJson(value));
  }

  /** Writes data as Stdin frames; resolves once the socket takes more. */
  async sendStdin(data: Buffer | string): Promise<void> {
    if (this.#sock.write(encodeFrame(FrameType.Stdin, data))) return;
    await new Promise((resolve) => this.#sock.once("drain", resolve));
  }

  sendEof(): void {
    this.#sock.write(encodeFrame(FrameType.Eof, Buffer.alloc(0)));
  }

  writeRaw(data: Buffer): void {
    this.#sock.write(data);
  }

  async close(): Promise<void> {
    this.#sock.destroy();
    await this.closed;
  }
}

/** One request, one JSON reply. */
export async function call(socket: string, req: Request): Promise<Reply> {
  const client = await Client.open(socket, req);
  try {
    return await client.json();
  } finally {
    await client.close();
  }
}

export interface ExecResult {
  pid: number;
  stdout: string;
  stderr: string;
  exit: ExitReply;
}

/** Runs an exec to the end; throws an agent error reply as an Error. */
export async function exec(socket: string, req: Omit<Extract<Request, { op: "exec" }>, "op">, stdin?: string): Promise<ExecResult> {
  const client = await Client.open(socket, { op: "exec", ...req });
  try {
    if (stdin !== undefined) {
      await client.sendStdin(stdin);
      client.sendEof();
    }
    const started = await client.json();
    if (started.type !== "started") throw new Error(`exec failed: ${JSON.stringify(started)}`);
    let stdout = "";
    let stderr = "";
    for (;;) {
      const frame = await client.next(30_000);
      if (frame.type === FrameType.Stdout) stdout += frame.payload.toString("utf8");
      else if (frame.type === FrameType.Stderr) stderr += frame.payload.toString("utf8");
      else if (frame.type === FrameType.Json) {
        const exit = JSON.parse(frame.payload.toString("utf8")) as Reply;
        if (exit.type !== "exit") throw new Error(`unexpected reply ${JSON.stringify(exit)}`);
        return { pid: started.pid, stdout, stderr, exit };
      }
    }
  } finally {
    await client.close();
  }
}

export function expectError(reply: Reply, code: string): void {
  if (reply.type !== "error" || reply.code !== code) throw new Error(`expected error ${code}, got ${JSON.stringify(reply)}`);
}

/** Whether a process is gone (or a zombie nobody reaped yet: dead all the same). */
export function processGone(pid: number): boolean {
  try {
    return /^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return true;
  }
}

export async function waitUntil(check: () => boolean, timeoutMs = 5_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
  /** A supplementary group created for the user. */
  extraGroup: string;
  extraGid: number;
}

/** useradd takes a lock on /etc/passwd; test files running in parallel may collide on it. */
function runLocked(cmd: string, args: string[]): void {
  for (let attempt = 0; ; attempt++) {
    try {
      execFileSync(cmd, args, { stdio: "pipe" });
      return;
    } catch (err) {
      const stderr = String((err as { stderr?: Buffer }).stderr ?? "");
      if (attempt >= 50 || !/lock/i.test(stderr)) throw new Error(`${cmd} ${args.join(" ")}: ${stderr}`);
      execFileSync("sleep", ["0.1"]);
    }
  }
}

/** Runs `fn` with a throwaway host user (no home) in a throwaway extra group, removed afterwards. */
export async function withUser<T>(fn: (user: TestUser) => Promise<T>): Promise<T> {
  const suffix = randomBytes(4).toString("hex");
  const name = `capt${suffix}`;
  const extraGroup = `capg${suffix}`;
  runLocked("groupadd", [extraGroup]);
  try {
    runLocked("useradd", ["-M", "-G", extraGroup, "-s", "/bin/sh", name]);
    try {
      const id = (flag: string, of = name) => Number(execFileSync("id", [flag, of], { encoding: "utf8" }).trim());
      const extraGid = Number(execFileSync("getent", ["group", extraGroup], { encoding: "utf8" }).split(":")[2]);
      return await fn({ name, uid: id("-u"), gid: id("-g"), extraGroup, extraGid });
    } finally {
      runLocked("userdel", [name]);
    }
  } finally {
    runLocked("groupdel", [extraGroup]);
  }
}

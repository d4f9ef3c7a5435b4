/**
 * What both fuzzers share: a seeded PRNG, the real API server as a child process (`capsule serve`
 * on 127.0.0.1, scratch data dir, two accounts' keys), bounded HTTP and WebSocket calls, and the
 * server's resources read from /proc.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import fsp from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { isApiErrorCode } from "@capsule/contract/errors";
import { AGENT_BUNDLE, IMAGES_DIR } from "@capsule/engine/test-support";

export const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../packages/cli/dist/src/main.js");

/** mulberry32: small, fast, and the same sequence for the same seed on every run. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)] as T;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  /** A short string of printable ASCII, with some punctuation that matters to parsers. */
  str(max = 16): string {
    const alphabet = "abcXYZ019 -_./%?#&=+\"'\\{}[]:;,<>|`$*~\t";
    let s = "";
    for (let i = this.int(max + 1); i > 0; i--) s += alphabet[this.int(alphabet.length)];
    return s;
  }
}

/** A process's resident set size and open fds, from /proc. */
export function procStats(pid: number): { rssBytes: number; fds: number; sockets: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  let fds = 0;
  let sockets = 0;
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    fds++;
    try {
      if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith("socket:")) sockets++;
    } catch {
      /* closed meanwhile */
    }
  }
  return { rssBytes: rssKb * 1024, fds, sockets };
}

export interface Tenant {
  account: string;
  key: string;
}

/** The real server, `capsule serve`, as a child process; its RSS sampled every 200 ms. */
export class ServerProc {
  readonly dataDir: string;
  readonly url: string;
  readonly port: number;
  readonly a: Tenant;
  readonly b: Tenant;
  readonly #child: ChildProcess;
  /** The server's whole log (level warn), kept next to the data dir until the next run. */
  readonly logFile: string;
  #logBytes = 0;
  #tail = "";
  #exit: string | undefined;
  peakRss = 0;
  readonly #sampler: NodeJS.Timeout;

  private constructor(child: ChildProcess, dataDir: string, url: string, port: number, a: Tenant, b: Tenant) {
    this.#child = child;
    this.dataDir = dataDir;
    this.url = url;
    this.port = port;
    this.a = a;
    this.b = b;
    this.logFile = `${dataDir}.log`;
    const keep = (d: Buffer) => {
      this.#tail = (this.#tail + d.toString("utf8")).slice(-16384);
      if (this.#logBytes < 64 << 20) fs.appendFileSync(this.logFile, d);
      this.#logBytes += d.length;
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    child.on("exit", (code, signal) => {
      this.#exit = `server exited: code ${code} signal ${signal}`;
    });
    this.#sampler = setInterval(() => this.sample(), 200);
    this.#sampler.unref();
  }

  static async start(): Promise<ServerProc> {
    const dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), "capsule-fuzz-"));
    const key = (account: string): Tenant => {
      const out = execFileSync(process.execPath, [CLI, "keys", "create", "--account", account, "--json", "--data-dir", dataDir], { encoding: "utf8" });
      return { account, key: (JSON.parse(out) as { key: string }).key };
    };
    const a = key("fuzz-a");
    const b = key("fuzz-b");
    const child = spawn(
      process.execPath,
      [CLI, "serve", "--port", "0", "--host", "127.0.0.1", "--data-dir", dataDir, "--images-dir", IMAGES_DIR, "--agent-dir", AGENT_BUNDLE, "--egress", "none", "--idle-timeout", "none"],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, CAPSULE_LOG_LEVEL: process.env.CAPSULE_LOG_LEVEL ?? "warn", CAPSULE_POOL: process.env.CAPSULE_POOL ?? JSON.stringify({ size: 0, hotSize: 0 }) } },
    );
    const listening = await new Promise<{ listening: string; port: number }>((resolve, reject) => {
      let buf = "";
      const timer = setTimeout(() => reject(new Error(`the server did not start within 60 s: ${buf.slice(-2000)}`)), 60_000);
      child.stdout?.on("data", (d: Buffer) => {
        buf = (buf + d.toString("utf8")).slice(-65536);
        for (const line of buf.split("\n")) {
          if (!line.startsWith('{"listening"')) continue;
          clearTimeout(timer);
          resolve(JSON.parse(line) as { listening: string; port: number });
        }
      });
      child.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`the server exited with ${code} at start: ${buf.slice(-2000)}`));
      });
    });
    return new ServerProc(child, dataDir, listening.listening, listening.port, a, b);
  }

  get pid(): number {
    return this.#child.pid as number;
  }
  /** Why the server is gone, or undefined while it runs. */
  get dead(): string | undefined {
    return this.#exit;
  }
  get logTail(): string {
    return this.#tail;
  }
  /** The server's log lines that mention `needle` (a request id), bounded. */
  logLines(needle: string): string {
    try {
      return fs.readFileSync(this.logFile, "utf8").split("\n").filter((l) => l.includes(needle)).join("\n").slice(0, 3000);
    } catch {
      return "";
    }
  }

  sample(): { rssBytes: number; fds: number; sockets: number } | undefined {
    if (this.#exit) return undefined;
    try {
      const s = procStats(this.pid);
      this.peakRss = Math.max(this.peakRss, s.rssBytes);
      return s;
    } catch {
      return undefined;
    }
  }

  /**
   * Deletes every VM and snapshot of both tenants (also after a failed set-up), then stops the
   * server and removes the data dir: VMs outlive their server by design, so stopping alone leaks.
   */
  async stop(): Promise<void> {
    clearInterval(this.#sampler);
    const agent = new http.Agent({ keepAlive: false });
    for (const t of this.#exit ? [] : [this.a, this.b]) {
      const headers = { authorization: `Bearer ${t.key}` };
      for (const [list, field, del] of [
        ["/v1/vms", "vms", "/v1/vms/"],
        ["/v1/vms/snapshots", "snapshots", "/v1/vms/snapshots/"],
      ] as const) {
        const r = await request(agent, this.url, { method: "GET", path: list, headers, timeoutMs: 60_000 });
        if ("error" in r || r.status !== 200) continue;
        const items = ((jsonOf(r) as Record<string, Array<{ id?: string; snapshotId?: string }>> | undefined)?.[field] ?? []).map((x) => x.id ?? x.snapshotId);
        for (const id of items) if (id) await request(agent, this.url, { method: "DELETE", path: `${del}${id}`, headers, timeoutMs: 120_000 });
      }
    }
    agent.destroy();
    if (!this.#exit) {
      const exited = new Promise<void>((r) => this.#child.once("exit", () => r()));
      this.#child.kill("SIGTERM");
      const t = setTimeout(() => this.#child.kill("SIGKILL"), 60_000);
      await exited;
      clearTimeout(t);
    }
    // Never rm -rf over a VM's mounts: a dir that still has some is left for the operator, named.
    const mounted = fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").some((l) => l.split(" ")[4]?.startsWith(this.dataDir));
    if (mounted) process.stderr.write(`fuzz: ${this.dataDir} still has mounts (a VM was not deleted); left in place\n`);
    else await fsp.rm(this.dataDir, { recursive: true, force: true }).catch(() => undefined);
  }
}

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The body, at most `maxBody` bytes of it. */
  body: Buffer;
  truncated: boolean;
  /** The connection broke after the status line: a streamed body cut short. */
  aborted?: boolean;
  ms: number;
}

/** The last request each kept-alive socket answered: a hang-up names it (it is usually the cause). */
const previousOnSocket = new WeakMap<object, string>();

/** One HTTP call with a hard deadline; the body read is bounded. `error` when no answer came. */
export function request(
  agent: http.Agent,
  base: string,
  opts: { method: string; path: string; headers?: Record<string, string>; body?: Buffer | string; timeoutMs?: number; maxBody?: number },
): Promise<Answer | { error: string; ms: number }> {
  const t0 = Date.now();
  const maxBody = opts.maxBody ?? 1 << 20;
  return new Promise((resolve) => {
    const u = new URL(base);
    let done = false;
    const finish = (v: Answer | { error: string; ms: number }) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(v);
    };
    const headers = { ...opts.headers };
    // Node's client sends a GET or DELETE body with neither a length nor chunking: the body would be
    // read as the next request. A length keeps the message well framed.
    if (opts.body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === "content-length")) headers["content-length"] = String(Buffer.byteLength(opts.body));
    const req = http.request({ host: u.hostname, port: u.port, method: opts.method, path: opts.path, headers, agent }, (res) => {
      const sock = res.socket;
      const chunks: Buffer[] = [];
      let n = 0;
      let truncated = false;
      res.on("data", (c: Buffer) => {
        if (n >= maxBody) {
          truncated = true;
          return;
        }
        chunks.push(c);
        n += c.length;
      });
      res.on("end", () => {
        if (sock) previousOnSocket.set(sock, `${opts.method} ${opts.path.slice(0, 80)} -> ${res.statusCode}, connection: ${res.headers.connection}`);
        finish({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), truncated, ms: Date.now() - t0 });
      });
      res.on("error", () => finish({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), truncated, aborted: true, ms: Date.now() - t0 }));
    });
    const timer = setTimeout(() => {
      req.destroy(new Error("deadline"));
      finish({ error: `no answer within ${opts.timeoutMs ?? 60_000} ms`, ms: Date.now() - t0 });
    }, opts.timeoutMs ?? 60_000);
    req.on("error", (e) => {
      const previous = req.socket ? previousOnSocket.get(req.socket) : undefined;
      finish({ error: `request: ${e.message}${previous ? ` (on a kept-alive connection; its previous request: ${previous})` : ""}`, ms: Date.now() - t0 });
    });
    // An early answer (413 to an oversize body) and a hang-up while the body is still going out.
    req.on("socket", (sock) => sock.on("error", () => undefined));
    if (opts.body !== undefined) req.end(opts.body);
    else req.end();
  });
}

/** JSON body of an answer, or undefined. */
export function jsonOf(a: Answer): unknown {
  try {
    return JSON.parse(a.body.toString("utf8"));
  } catch {
    return undefined;
  }
}

/**
 * Checks an answer against the API's rules: an error (4xx/5xx) has `{code, message}` with a
 * registry code; the only 5xx are 501 (`unsupported`) and 503 SERVICE_UNAVAILABLE with a
 * `reason`. Returns what is wrong, or undefined.
 */
export function checkAnswer(a: Answer): string | undefined {
  if (a.status < 400) return undefined;
  if (a.truncated) return `error body over the read limit (${a.status})`;
  const body = jsonOf(a) as { code?: unknown; message?: unknown; reason?: unknown; unsupported?: unknown } | undefined;
  if (!body || typeof body !== "object") return `status ${a.status} without a JSON error body: ${a.body.subarray(0, 200).toString()}`;
  if (!isApiErrorCode(body.code)) return `status ${a.status} with a code outside the registry: ${JSON.stringify(body.code)}`;
  if (typeof body.message !== "string") return `status ${a.status} ${body.code} without a message`;
  if (a.status >= 500) {
    if (a.status === 501 && body.unsupported === true) return undefined;
    if (a.status === 503 && body.code === "SERVICE_UNAVAILABLE" && typeof body.reason === "string") return undefined;
    return `undocumented ${a.status} ${body.code}: ${body.message}`;
  }
  return undefined;
}

export interface WsOutcome {
  /** The upgrade's refusal, when there was one. */
  refused?: Answer;
  opened: boolean;
  /** The first text frames, each cut to 4 KiB. */
  texts: string[];
  /** The first text frame that is not JSON, or an error frame without a registry code. */
  badText?: string;
  binaryBytes: number;
  /** Every byte the server sent, bounded (for the cross-tenant check). */
  seen: Buffer;
  closeCode?: number;
  error?: string;
  ms: number;
}

/**
 * Opens a WebSocket, runs `drive` on it once open, and ends it after `lingerMs` (or when the
 * server closes). Everything received is kept, bounded to 256 KiB.
 */
export function wsCase(url: string, headers: Record<string, string>, drive: (ws: WebSocket) => void, lingerMs: number, timeoutMs = 45_000): Promise<WsOutcome> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const out: WsOutcome = { opened: false, texts: [], binaryBytes: 0, seen: Buffer.alloc(0), ms: 0 };
    const seen: Buffer[] = [];
    let seenN = 0;
    const keep = (b: Buffer) => {
      if (seenN < 262144) {
        seen.push(b.subarray(0, 262144 - seenN));
        seenN += Math.min(b.length, 262144 - seenN);
      }
    };
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(hard);
      clearTimeout(linger);
      out.seen = Buffer.concat(seen);
      out.ms = Date.now() - t0;
      try {
        ws.terminate();
      } catch {
        /* already gone */
      }
      resolve(out);
    };
    let linger: NodeJS.Timeout | undefined;
    const hard = setTimeout(() => {
      out.error = `WebSocket not over within ${timeoutMs} ms`;
      finish();
    }, timeoutMs);
    const ws = new WebSocket(url, { headers, maxPayload: 8 << 20, handshakeTimeout: 30_000 });
    ws.on("unexpected-response", (req, res) => {
      // The refusal is ours to read; a hang-up while ws still writes must not throw.
      req.on("error", () => undefined);
      res.socket?.on("error", () => undefined);
      const chunks: Buffer[] = [];
      let n = 0;
      res.on("data", (c: Buffer) => {
        if (n < 1 << 20) chunks.push(c);
        n += c.length;
      });
      res.on("end", () => {
        const body = Buffer.concat(chunks);
        keep(body);
        out.refused = { status: res.statusCode ?? 0, headers: res.headers, body, truncated: n > 1 << 20, ms: Date.now() - t0 };
        finish();
      });
      res.on("error", () => finish());
    });
    ws.on("open", () => {
      out.opened = true;
      try {
        drive(ws);
      } catch {
        /* the fuzzer's own send on a closing socket */
      }
      linger = setTimeout(finish, lingerMs);
    });
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      keep(data);
      if (isBinary) out.binaryBytes += data.length;
      else {
        const text = data.toString("utf8");
        let m: { type?: unknown; code?: unknown } | undefined;
        try {
          m = JSON.parse(text) as { type?: unknown; code?: unknown };
        } catch {
          out.badText ??= `a text frame that is not JSON: ${text.slice(0, 200)}`;
        }
        if (m && m.type === "error" && !isApiErrorCode(m.code)) out.badText ??= `an error frame with a code outside the registry: ${text.slice(0, 200)}`;
        if (out.texts.length < 64) out.texts.push(text.slice(0, 4096));
      }
    });
    ws.on("close", (code) => {
      out.closeCode = code;
      finish();
    });
    ws.on("error", (e) => {
      if (!out.refused) out.error ??= e.message;
      if (!out.refused) finish();
    });
  });
}

/** Checks a WebSocket outcome: a refusal follows {@link checkAnswer}; text frames are JSON; error frames carry a registry code. */
export function checkWs(o: WsOutcome): string | undefined {
  if (o.refused) return checkAnswer(o.refused);
  if (o.error && !o.opened) return `WebSocket failed before opening: ${o.error}`;
  if (o.error?.includes("not over within")) return o.error;
  return o.badText;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Runs `task` with at most `limit` in flight until `more()` says stop. */
export async function pool(limit: number, more: () => boolean, task: (i: number) => Promise<void>): Promise<void> {
  let i = 0;
  const worker = async () => {
    while (more()) await task(i++);
  };
  await Promise.all(Array.from({ length: limit }, worker));
}

export function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

/**
 * Failures, grouped: the same kind of failure (ids and numbers aside) is kept once with a count,
 * so one bug hit a thousand times does not crowd out the others. At most 40 kinds.
 */
export class Failures {
  readonly #kinds = new Map<string, { example: string; count: number }>();
  add(s: string): void {
    const key = s.replace(/[0-9a-f]{12,}/g, "#").replace(/\d+/g, "N").slice(0, 160);
    const k = this.#kinds.get(key);
    if (k) k.count++;
    else if (this.#kinds.size < 40) this.#kinds.set(key, { example: s, count: 1 });
  }
  get total(): number {
    let n = 0;
    for (const k of this.#kinds.values()) n += k.count;
    return n;
  }
  list(): string[] {
    return [...this.#kinds.values()].map((k) => (k.count > 1 ? `${k.example} (x${k.count})` : k.example));
  }
}

/** The request id of an INTERNAL_ERROR body, for finding its cause in the server's log. */
export function requestIdOf(a: Answer): string | undefined {
  return (jsonOf(a) as { requestId?: string } | undefined)?.requestId;
}

/**
 * Hostile and careless WebSocket clients against a real server and real VMs: broken handshakes
 * start nothing and hold nothing; stdin nobody reads does not pile up in the server; a peer that
 * stops answering pings is dropped; revoking a key (in the server, or with the CLI in another
 * process) and signing out of the console close the sockets they opened; the console's
 * unauthenticated sign-in reads at most a few KiB.
 *
 * The server runs in this process (so `process.memoryUsage()` is the server's memory, plus this
 * client's, which sends only while its own buffer is under 4 MiB).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs/promises";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import WebSocket from "ws";
import { startServer, type RunningServer } from "../src/index.js";
import { CLI, call, destroyEngineState, sandboxGap, scratchDir, testServerOptions } from "../test-support/harness.js";

const HEARTBEAT_MS = 400;
const AUTH_CHECK_MS = 300;
/** How fast a revocation or sign-out must close the socket. */
const CLOSE_WITHIN_MS = 3_000;
const MiB = 1024 * 1024;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Ctx {
  server: RunningServer;
  dataDir: string;
  url: string;
  key: string;
  vm: string;
}

/** An upgrade request written by hand, with `headers` replacing the valid ones; answers the raw reply. */
function rawUpgrade(httpUrl: string, key: string, path: string, headers: Record<string, string>): Promise<string> {
  const { hostname, port } = new URL(httpUrl);
  const all: Record<string, string> = { Host: `${hostname}:${port}`, Connection: "Upgrade", Upgrade: "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", Authorization: `Bearer ${key}`, ...headers };
  const lines = Object.entries(all)
    .filter(([, v]) => v !== "")
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(port), hostname, () => sock.write(`GET ${path} HTTP/1.1\r\n${lines}\r\n`));
    let answer = "";
    sock.on("data", (d: Buffer) => (answer += d.toString("latin1")));
    sock.on("close", () => resolve(answer));
    sock.on("error", reject);
    sock.setTimeout(10_000, () => sock.destroy(new Error("no answer to the upgrade")));
  });
}

/** Opens a socket (Bearer `key`, if any); rejects with the refusal's status. Only text messages are kept. */
function open(url: string, path: string, key: string | undefined, opts: { autoPong?: boolean } = {}): Promise<{ ws: WebSocket; texts: string[]; closed: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace(/^http/, "ws") + path, { headers: key ? { authorization: `Bearer ${key}` } : {}, perMessageDeflate: false, autoPong: opts.autoPong ?? true });
    const texts: string[] = [];
    ws.on("message", (d: Buffer, binary: boolean) => {
      if (!binary) texts.push(d.toString("utf8"));
    });
    const closed = new Promise<number>((r) => ws.once("close", (code: number) => r(code)));
    ws.once("open", () => resolve({ ws, texts, closed }));
    ws.once("unexpected-response", (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.once("error", reject);
  });
}

async function until(what: string, pred: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(50);
  }
}

async function sh(c: Ctx, vm: string, command: string): Promise<string> {
  const r = await call(c.url, c.key, "POST", `/v1/vms/${vm}/exec-await`, { command });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.stdout as string;
}

/** How many processes in the VM have a command line starting with `prefix`. */
async function count(c: Ctx, vm: string, prefix: string): Promise<number> {
  return Number((await sh(c, vm, `ps -eo args | grep -c '^${prefix}' || true`)).trim());
}

/** Closes within `ms`, or fails; answers the close code. */
async function closesWithin(closed: Promise<number>, ms: number, what: string): Promise<number> {
  const code = await Promise.race([closed, sleep(ms).then(() => undefined)]);
  assert.ok(code !== undefined, `${what}: still open after ${ms} ms`);
  return code;
}

/** Sends 1 MiB frames while the client's own buffer is under 4 MiB, until `total` or `maxMs`; answers the bytes sent. */
async function flood(ws: WebSocket, total: number, maxMs: number): Promise<number> {
  const chunk = Buffer.alloc(MiB, 0x61);
  const end = Date.now() + maxMs;
  let sent = 0;
  while (sent < total && Date.now() < end && ws.readyState === ws.OPEN) {
    if (ws.bufferedAmount > 4 * MiB) {
      await sleep(5);
      continue;
    }
    ws.send(chunk, { binary: true });
    sent += chunk.length;
    await new Promise((r) => setImmediate(r));
  }
  return sent;
}

/** Runs `f` while sampling RSS every 25 ms; answers its result and the peak growth over the start. */
async function peakRss<T>(f: () => Promise<T>): Promise<{ value: T; growth: number }> {
  const base = process.memoryUsage().rss;
  let peak = base;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 25);
  try {
    const value = await f();
    return { value, growth: Math.max(peak, process.memoryUsage().rss) - base };
  } finally {
    clearInterval(timer);
  }
}

describe("WebSocket hardening", () => {
  let gap: string | undefined;
  let c: Ctx | undefined;
  const get = (): Ctx => {
    if (!c) throw new Error("server not started");
    return c;
  };

  before(async () => {
    gap = await sandboxGap();
    if (gap) return;
    const dataDir = await scratchDir();
    const server = await startServer(testServerOptions(dataDir, { idleCheckMs: 250, limits: { wsHeartbeatMs: HEARTBEAT_MS, wsAuthCheckMs: AUTH_CHECK_MS } }));
    const key = server.keys.createKey("alice").key;
    const vm = (await call(server.url, key, "POST", "/v1/vms", { idleTimeoutSeconds: null })).body.id as string;
    c = { server, dataDir, url: server.url, key, vm };
  });
  after(async () => {
    if (!c) return;
    try {
      await destroyEngineState(c.server.engine);
    } finally {
      await c.server.close();
      await fs.rm(c.dataDir, { recursive: true, force: true });
    }
  });

  it("a broken handshake (bad Sec-WebSocket-Key, wrong version) starts nothing in the guest and holds nothing", async (ctx) => {
    if (gap) return ctx.skip(gap);
    const t = get();
    const vm = (await call(t.url, t.key, "POST", "/v1/vms", { idleTimeoutSeconds: 2 })).body.id as string;
    try {
      const routes = [
        ["pty", `/v1/vms/${vm}/pty?exec=${encodeURIComponent("touch /tmp/started-pty; sleep 611")}`],
        ["exec", `/v1/vms/${vm}/exec-stream?command=${encodeURIComponent("touch /tmp/started-exec; sleep 612")}`],
      ] as const;
      const broken: Array<Record<string, string>> = [{ "Sec-WebSocket-Key": "" }, { "Sec-WebSocket-Key": "not-a-key" }, { "Sec-WebSocket-Version": "12" }, { Upgrade: "h2c" }];
      for (const [name, path] of routes) {
        for (const headers of broken) {
          const answer = await rawUpgrade(t.url, t.key, path, headers);
          assert.match(answer, /^HTTP\/1\.1 400 /, `${name} ${JSON.stringify(headers)}: ${answer.slice(0, 200)}`);
        }
      }
      await sleep(500);
      assert.equal((await sh(t, vm, "ls /tmp | grep -c '^started-' || true")).trim(), "0", "a command of a broken handshake ran");
      assert.equal(await count(t, vm, "sleep 61"), 0);
      // No activity hold was left behind: the VM goes idle and is suspended.
      await until("the VM is suspended", async () => (await call(t.url, t.key, "GET", `/v1/vms/${vm}`)).body.state === "suspended", 15_000);
    } finally {
      await call(t.url, t.key, "DELETE", `/v1/vms/${vm}`);
    }
  });

  it("stdin is flow-controlled: 256 MiB at `sleep` over exec-stream and PTY; server RSS grows by under 64 MiB", async (ctx) => {
    if (gap) return ctx.skip(gap);
    const t = get();
    const bound = 64 * MiB;
    // exec-stream, in the query form older SDKs use (the start-message form shares the bridge)
    const e = await open(t.url, `/v1/vms/${t.vm}/exec-stream?command=${encodeURIComponent("sleep 12")}`, t.key);
    await until("started", () => e.texts.some((m) => m.includes('"started"')), 10_000);
    const ex = await peakRss(() => flood(e.ws, 256 * MiB, 8_000));
    ctx.diagnostic(`exec-stream: sent ${(ex.value / MiB).toFixed(0)} MiB, RSS +${(ex.growth / MiB).toFixed(1)} MiB`);
    assert.ok(ex.growth < bound, `exec-stream: RSS grew by ${(ex.growth / MiB).toFixed(1)} MiB`);
    assert.equal(await closesWithin(e.closed, 30_000, "exec-stream after its process exited"), 1000);
    assert.match(e.texts.at(-1) ?? "", /"type":"exit","exitCode":0/);
    // PTY
    const p = await open(t.url, `/v1/vms/${t.vm}/pty?exec=${encodeURIComponent("sleep 12")}`, t.key);
    const px = await peakRss(() => flood(p.ws, 256 * MiB, 8_000));
    ctx.diagnostic(`pty: sent ${(px.value / MiB).toFixed(0)} MiB, RSS +${(px.growth / MiB).toFixed(1)} MiB`);
    assert.ok(px.growth < bound, `pty: RSS grew by ${(px.growth / MiB).toFixed(1)} MiB`);
    assert.equal(await closesWithin(p.closed, 30_000, "pty after its process exited"), 1000);
  });

  it("a peer that stops answering pings is dropped, and its process ends", async (ctx) => {
    if (gap) return ctx.skip(gap);
    const t = get();
    const s = await open(t.url, `/v1/vms/${t.vm}/exec-stream?command=${encodeURIComponent("sleep 620")}`, t.key, { autoPong: false });
    await until("started", () => s.texts.some((m) => m.includes('"started"')), 10_000);
    await closesWithin(s.closed, HEARTBEAT_MS * 3 + 1_000, "a socket that answers no ping");
    await until("sleep 620 ended", async () => (await count(t, t.vm, "sleep 620")) === 0, 5_000);
    // One that answers stays.
    const ok = await open(t.url, `/v1/vms/${t.vm}/exec-stream`, t.key);
    ok.ws.send(JSON.stringify({ type: "start", command: "sleep 621" }));
    await sleep(HEARTBEAT_MS * 4);
    assert.equal(ok.ws.readyState, WebSocket.OPEN);
    ok.ws.close();
    await ok.closed;
  });

  it("revoking a key closes its sockets, also when the CLI revokes it from another process", async (ctx) => {
    if (gap) return ctx.skip(gap);
    const t = get();
    // In the server.
    const carol = t.server.keys.createKey("alice");
    const s1 = await open(t.url, `/v1/vms/${t.vm}/exec-stream?command=${encodeURIComponent("sleep 630")}`, carol.key);
    await until("started", () => s1.texts.some((m) => m.includes('"started"')), 10_000);
    assert.ok(t.server.keys.revokeKey(carol.info.id));
    assert.equal(await closesWithin(s1.closed, CLOSE_WITHIN_MS, "exec-stream of a revoked key"), 1008);
    await until("sleep 630 ended", async () => (await count(t, t.vm, "sleep 630")) === 0, 5_000);
    // With `capsule keys revoke`, another process writing the database.
    const dave = t.server.keys.createKey("alice");
    const s2 = await open(t.url, `/v1/vms/${t.vm}/pty`, dave.key);
    const s3 = await open(t.url, `/v1/vms/${t.vm}/exec-stream`, dave.key);
    s3.ws.send(JSON.stringify({ type: "start", command: "sleep 631" }));
    const other = await open(t.url, `/v1/vms/${t.vm}/pty`, t.key);
    await promisify(execFile)(process.execPath, [CLI, "keys", "revoke", dave.info.id, "--data-dir", t.dataDir]);
    assert.equal(await closesWithin(s2.closed, CLOSE_WITHIN_MS, "PTY of a key revoked by the CLI"), 1008);
    assert.equal(await closesWithin(s3.closed, CLOSE_WITHIN_MS, "exec-stream of a key revoked by the CLI"), 1008);
    assert.equal(other.ws.readyState, WebSocket.OPEN, "another key's socket stays open");
    other.ws.close();
    await other.closed;
  });

  it("signing out of the console closes the terminals opened with it", async (ctx) => {
    if (gap) return ctx.skip(gap);
    const t = get();
    const headers = { "x-capsule-console": "1", "content-type": "application/json" };
    const signIn = await fetch(`${t.url}/console/api/session`, { method: "POST", headers, body: JSON.stringify({ key: t.key }) });
    assert.equal(signIn.status, 200);
    const cookie = (signIn.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
    const tok = async () => ((await (await fetch(`${t.url}/console/api/pty-token`, { method: "POST", headers: { ...headers, cookie }, body: JSON.stringify({ vmId: t.vm }) })).json()) as { token: string }).token;
    const term = await open(t.url, `/v1/vms/${t.vm}/pty?token=${await tok()}`, undefined);
    const apiSocket = await open(t.url, `/v1/vms/${t.vm}/pty`, t.key);
    assert.equal((await fetch(`${t.url}/console/api/session`, { method: "DELETE", headers: { ...headers, cookie } })).status, 200);
    assert.equal(await closesWithin(term.closed, CLOSE_WITHIN_MS, "console terminal after sign-out"), 1008);
    assert.equal(apiSocket.ws.readyState, WebSocket.OPEN, "the key itself was not revoked: its own sockets stay");
    apiSocket.ws.close();
    await apiSocket.closed;
  });

  it("console sign-in reads at most 4 KiB, with or without Content-Length", async (ctx) => {
    if (gap) return ctx.skip(gap);
    const t = get();
    const big = JSON.stringify({ key: "x".repeat(64 * 1024) });
    const headers = { "x-capsule-console": "1", "content-type": "application/json" };
    const sized = await fetch(`${t.url}/console/api/session`, { method: "POST", headers, body: big });
    assert.equal(sized.status, 413);
    const chunked = await fetch(`${t.url}/console/api/session`, {
      method: "POST",
      headers,
      body: new ReadableStream({
        start(ctl) {
          for (let i = 0; i < 64; i++) ctl.enqueue(new TextEncoder().encode(i === 0 ? '{"key":"' + "x".repeat(1023) : "x".repeat(1024)));
          ctl.close();
        },
      }),
      duplex: "half",
    } as RequestInit);
    assert.equal(chunked.status, 413);
    assert.equal((await chunked.json() as { code: string }).code, "VALIDATION_ERROR");
  });
});

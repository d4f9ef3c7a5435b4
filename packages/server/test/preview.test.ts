/**
 * The preview proxy on a real server and real sandboxes, over raw HTTP (browser tests are in
 * preview-browser.test.ts): a dev-server-like app in a VM, listening on localhost only, reached at
 * `<port>-<vmid>.localhost`. Private by default (no key, another account's key and a VM that does
 * not exist get the same page); what the VM sees (no Capsule credentials, X-Forwarded-*); a
 * WebSocket both ways; server-sent events unbuffered; 100 MB each way with equal sha256 while the
 * server's RSS stays bounded; 502 when nothing listens; a suspended VM woken by a preview request;
 * Freestyle `domains` through the official client (public, one account's, reserved names, freed
 * on delete, 502 once the VM's server stops).
 */
import assert from "node:assert/strict";
import crypto from "node:crypto";
import http from "node:http";
import { Readable } from "node:stream";
import { describe, it } from "node:test";
import WebSocket from "ws";
import { PROXY_ERROR_HEADER } from "../src/preview/pages.js";
import { client, rejectsWith } from "../test-support/client.js";
import { call, useServer } from "../test-support/harness.js";
import { APP_PATH, DEV_APP, SSE_GAP_MS, WS_GREETING, patternBlock, patternSha256, startAppCommand } from "../test-support/preview-app.js";

const APP_PORT = 5173;
const BIG = 100 * 1024 * 1024;
/** RSS the server may grow by while 100 MB go each way: far below the bytes moved. */
const RSS_GROWTH_LIMIT = 64 * 1024 * 1024;

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One request to the server with a chosen Host (Node does not resolve `*.localhost`). */
function request(serverUrl: string, host: string, path: string, opts: { method?: string; headers?: Record<string, string>; body?: Readable } = {}): Promise<http.IncomingMessage> {
  const u = new URL(serverUrl);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path, method: opts.method ?? "GET", headers: { host, ...opts.headers } }, resolve);
    req.on("error", reject);
    if (opts.body) opts.body.pipe(req);
    else req.end();
  });
}

async function fetchHost(serverUrl: string, host: string, path: string, opts: Parameters<typeof request>[3] = {}): Promise<Answer> {
  const res = await request(serverUrl, host, path, opts);
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) };
}

/** `bytes` of the download pattern as a stream. */
function patternStream(bytes: number): Readable {
  const block = patternBlock();
  let left = bytes;
  return new Readable({
    read() {
      if (left <= 0) return void this.push(null);
      const c = block.subarray(0, Math.min(left, block.length));
      left -= c.length;
      this.push(c);
    },
  });
}

/** The largest RSS of this process (the server runs in it) while `fn` runs, sampled every 50 ms. */
async function peakRss<T>(fn: () => Promise<T>): Promise<{ value: T; peak: number; before: number }> {
  global.gc?.();
  const before = process.memoryUsage().rss;
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
  try {
    return { value: await fn(), peak, before };
  } finally {
    clearInterval(timer);
  }
}

type Freestyle = ReturnType<typeof client>;

/** `vms.create({ domains })`: the client sends the field as given, though its public types leave it out. */
function createWithDomains(fs: Freestyle, domains: Array<{ domain: string; vmPort: number }>): ReturnType<Freestyle["vms"]["create"]> {
  return fs.vms.create({ domains } as Parameters<Freestyle["vms"]["create"]>[0]);
}

/** Where this server's tenants may claim domains, and an API host name beside it. */
const DOMAIN_SUFFIX = "example.test";
const API_HOSTNAME = "capsule.test";

describe("preview proxy", () => {
  const t = useServer({ domainSuffixes: [DOMAIN_SUFFIX], apiHostnames: [API_HOSTNAME] });
  let vmId: string;
  let host: string;

  it("starts a dev app in a VM", { timeout: 60_000 }, async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, server } = t.get();
    const created = await call(url, keyA, "POST", "/v1/vms", {});
    assert.equal(created.status, 200, JSON.stringify(created.body));
    vmId = created.body.id as string;
    host = `${APP_PORT}-${vmId}.localhost:${server.port}`;
    await server.engine.guest.writeFile(vmId, APP_PATH, DEV_APP);
    const started = await server.engine.guest.exec(vmId, { command: startAppCommand(APP_PORT) });
    assert.equal(started.exitCode, 0, started.stdout + started.stderr);
  });

  it("is private: no key, another account's key and an unknown VM get the same page; the API is untouched", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, keyB, server } = t.get();
    const none = await fetchHost(url, host, "/");
    const other = await fetchHost(url, host, "/", { headers: { authorization: `Bearer ${keyB}` } });
    const unknown = await fetchHost(url, `${APP_PORT}-nosuchvm0000.localhost:${server.port}`, "/", { headers: { authorization: `Bearer ${keyA}` } });
    for (const [what, a] of [["no key", none], ["another account's key", other], ["an unknown VM", unknown]] as const) {
      assert.equal(a.status, 401, what);
      assert.equal(a.headers[PROXY_ERROR_HEADER], "PREVIEW_PRIVATE", what);
      assert.match(a.headers["content-type"] ?? "", /^text\/html/, what);
      // The same page (its console link names the host asked for).
      const page = (x: Answer) => x.body.toString().replace(/href="[^"]*"/, "");
      assert.equal(page(a), page(none), `${what}: the same page`);
    }
    // The API's own host names are the API's.
    const api = await call(url, keyA, "GET", `/v1/vms/${vmId}`);
    assert.equal(api.status, 200);
    const bare = await fetchHost(url, `localhost:${server.port}`, "/healthz");
    assert.equal(bare.status, 200);
  });

  it("with the owner's key: the page; the VM sees X-Forwarded-* and none of Capsule's credentials", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const page = await fetchHost(url, host, "/", { headers: { authorization: `Bearer ${keyA}` } });
    assert.equal(page.status, 200);
    assert.match(page.body.toString(), /<p id="msg">waiting<\/p>/);
    const seen = await fetchHost(url, host, "/headers?a=1&capsule_share=tok&b=2", {
      headers: { authorization: `Bearer ${keyA}`, cookie: "app=1; capsule_preview=secret; capsule_console=secret2", "x-forwarded-for": "203.0.113.9", "keep-alive": "timeout=5", connection: "keep-alive, x-drop-me", "x-drop-me": "1" },
    });
    assert.equal(seen.status, 200);
    const { url: path, headers } = JSON.parse(seen.body.toString()) as { url: string; headers: Record<string, string> };
    assert.equal(path, "/headers?a=1&b=2", "the share token is not passed on");
    assert.equal(headers.authorization, undefined, "the API key is not passed on");
    assert.equal(headers.cookie, "app=1", "Capsule's cookies are not passed on");
    assert.equal(headers["keep-alive"], undefined);
    assert.equal(headers["x-drop-me"], undefined, "headers named in Connection stay on their hop");
    assert.equal(headers.host, host);
    assert.equal(headers["x-forwarded-host"], host);
    assert.equal(headers["x-forwarded-proto"], "http");
    assert.equal(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    // The VM may set its own cookies, never Capsule's.
    assert.deepEqual(seen.headers["set-cookie"], ["app=1; Path=/"]);
  });

  it("a WebSocket: the VM's push arrives, and a message goes back", { timeout: 20_000 }, async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const ws = new WebSocket(`${url.replace("http", "ws")}/ws`, { headers: { host, authorization: `Bearer ${keyA}` } });
    const messages: string[] = [];
    await new Promise<void>((resolve, reject) => {
      ws.on("message", (m: Buffer) => {
        messages.push(m.toString());
        if (messages.length === 1) ws.send("ping");
        else resolve();
      });
      ws.on("error", reject);
    });
    assert.deepEqual(messages, [WS_GREETING, "echo:ping"]);
    ws.close();
    const refused = new WebSocket(`${url.replace("http", "ws")}/ws`, { headers: { host } });
    const status = await new Promise<number>((resolve) => refused.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0)));
    assert.equal(status, 401, "a WebSocket without the key is refused too");
  });

  it("a share link's WebSocket closes when the share is revoked; a public port's when it is made private", { timeout: 30_000 }, async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const opened = (headers: Record<string, string>) =>
      new Promise<WebSocket>((resolve, reject) => {
        const ws = new WebSocket(`${url.replace("http", "ws")}/ws`, { headers: { host, ...headers } });
        ws.once("message", () => resolve(ws)); // the VM's greeting: the tunnel is up
        ws.once("error", reject);
      });
    const closed = (ws: WebSocket) => new Promise<void>((resolve) => (ws.readyState === ws.CLOSED ? resolve() : ws.once("close", () => resolve())));
    const share = await call(url, keyA, "POST", `/v1/vms/${vmId}/ports/${APP_PORT}/shares`, { ttlSeconds: 600 });
    assert.equal(share.status, 200, JSON.stringify(share.body));
    const link = new URL(share.body.url as string);
    const landing = await fetchHost(url, host, `${link.pathname}${link.search}`);
    assert.equal(landing.status, 302);
    const cookie = String(landing.headers["set-cookie"]).split(";")[0] as string;
    const shared = await opened({ cookie });
    await call(url, keyA, "PUT", `/v1/vms/${vmId}/ports/${APP_PORT}/public`, { public: true });
    const anyone = await opened({});
    const owners = await opened({ authorization: `Bearer ${keyA}` });
    const revoked = await call(url, keyA, "DELETE", `/v1/vms/${vmId}/ports/${APP_PORT}/shares/${share.body.id as string}`);
    assert.equal(revoked.status, 200);
    await closed(shared);
    assert.equal(anyone.readyState, anyone.OPEN, "the public port's socket is another grant's");
    await call(url, keyA, "PUT", `/v1/vms/${vmId}/ports/${APP_PORT}/public`, { public: false });
    await closed(anyone);
    assert.equal(owners.readyState, owners.OPEN, "the owner's key still holds");
    owners.close();
    await closed(owners);
  });

  it("server-sent events arrive as sent, not at the end", { timeout: 20_000 }, async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const started = Date.now();
    const res = await request(url, host, "/sse", { headers: { authorization: `Bearer ${keyA}` } });
    assert.equal(res.headers["content-type"], "text/event-stream");
    const arrivals: Array<[string, number]> = [];
    for await (const c of res) arrivals.push([(c as Buffer).toString(), Date.now() - started]);
    const text = arrivals.map(([s]) => s).join("");
    assert.equal(text, "data: one\n\ndata: two\n\n");
    const first = arrivals.find(([s]) => s.includes("one"))?.[1] ?? Infinity;
    const last = arrivals.at(-1)?.[1] ?? 0;
    assert.ok(last - first >= SSE_GAP_MS * 0.8, `the first event came ${last - first} ms before the end (sent ${SSE_GAP_MS} ms apart)`);
  });

  it("100 MB each way with equal sha256, the server's RSS bounded", { timeout: 300_000 }, async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const auth = { authorization: `Bearer ${keyA}` };
    const { value, peak, before } = await peakRss(async () => {
      const up = await fetchHost(url, host, "/upload", { method: "POST", headers: { ...auth, "content-type": "application/octet-stream", "content-length": String(BIG) }, body: patternStream(BIG) });
      const res = await request(url, host, `/download?bytes=${BIG}`, { headers: auth });
      const h = crypto.createHash("sha256");
      let bytes = 0;
      for await (const c of res) {
        h.update(c as Buffer);
        bytes += (c as Buffer).length;
      }
      return { up: JSON.parse(up.body.toString()) as { bytes: number; sha256: string }, down: { bytes, sha256: h.digest("hex") } };
    });
    const expected = patternSha256(BIG);
    assert.deepEqual(value.up, { bytes: BIG, sha256: expected }, "upload");
    assert.deepEqual(value.down, { bytes: BIG, sha256: expected }, "download");
    ctx.diagnostic(`RSS before ${(before / 2 ** 20).toFixed(0)} MiB, peak ${(peak / 2 ** 20).toFixed(0)} MiB`);
    assert.ok(peak - before < RSS_GROWTH_LIMIT, `RSS grew by ${((peak - before) / 2 ** 20).toFixed(0)} MiB moving 200 MB`);
  });

  it("502 with a clear page when nothing listens on the port", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, server } = t.get();
    const a = await fetchHost(url, `5174-${vmId}.localhost:${server.port}`, "/", { headers: { authorization: `Bearer ${keyA}` } });
    assert.equal(a.status, 502);
    assert.equal(a.headers[PROXY_ERROR_HEADER], "NOTHING_LISTENS");
    assert.match(a.body.toString(), /Nothing listens on port 5174/);
  });

  it("a suspended VM wakes on a preview request, which waits for its port", { timeout: 120_000 }, async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, server } = t.get();
    assert.equal((await call(url, keyA, "POST", `/v1/vms/${vmId}/suspend`)).status, 200);
    assert.equal((await call(url, keyA, "GET", `/v1/vms/${vmId}`)).body.state, "suspended");
    const answer = fetchHost(url, host, "/", { headers: { authorization: `Bearer ${keyA}` } });
    // The wake boots a fresh sandbox; its server is started once it runs, within the proxy's wait.
    for (let i = 0; (await server.engine.getVm(vmId)).state !== "running"; i++) {
      assert.ok(i < 600, "the preview request woke the VM");
      await new Promise((r) => setTimeout(r, 50));
    }
    const started = await server.engine.guest.exec(vmId, { command: startAppCommand(APP_PORT) });
    assert.equal(started.exitCode, 0, started.stdout + started.stderr);
    const page = await answer;
    assert.equal(page.status, 200, page.body.toString());
    assert.match(page.body.toString(), /dev app/);
    assert.equal((await call(url, keyA, "GET", `/v1/vms/${vmId}`)).body.state, "running");
    assert.equal(server.proxy.openConnections, 0, "every tunnel was released");
  });

  it("domains through freestyle@0.1.63: served publicly on Capsule's port, one account's, reserved names refused, 502 once the server stops, freed on delete", { timeout: 120_000 }, async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, keyB, server } = t.get();
    const domain = `app.${DOMAIN_SUFFIX}`;
    const alice = client(url, keyA);
    const bob = client(url, keyB);
    const created = await createWithDomains(alice, [{ domain: "App.Example.Test", vmPort: APP_PORT }]);
    assert.deepEqual(created.domains, [domain], "the create answer lists the (normalised) domain");
    const id = created.vmId;
    await server.engine.guest.writeFile(id, APP_PATH, DEV_APP);
    const started = await server.engine.guest.exec(id, { command: startAppCommand(APP_PORT) });
    assert.equal(started.exitCode, 0, started.stdout + started.stderr);

    const page = await fetchHost(url, `${domain}:${server.port}`, "/");
    assert.equal(page.status, 200, "a domain is public: no credentials needed");
    assert.match(page.body.toString(), /dev app/);
    const seen = JSON.parse((await fetchHost(url, domain, "/headers")).body.toString()) as { headers: Record<string, string> };
    assert.equal(seen.headers.host, domain);

    // Freestyle's start answer lists the VM's domains (it runs: the start is a no-op).
    assert.deepEqual((await call(url, keyA, "POST", `/v1/vms/${id}/start`, {})).body.domains, [domain]);
    // A create of alice's that would move the name but fails (useradd of an existing user) leaves it where it was.
    const failing = { domains: [{ domain, vmPort: 80 }], users: [{ name: "root" }] };
    await rejectsWith(alice.vms.create(failing as Parameters<Freestyle["vms"]["create"]>[0]), "CreateVmBadRequestError", "CREATE_VM_BAD_REQUEST");
    assert.match((await fetchHost(url, domain, "/")).body.toString(), /dev app/, "a failed create does not take the name from its VM");
    await rejectsWith(createWithDomains(bob, [{ domain, vmPort: 80 }]), "DomainAlreadyExistsError", "DOMAIN_ALREADY_EXISTS");
    assert.equal((await call(url, keyB, "GET", "/v1/vms")).body.totalCount, 0, "a refused create makes nothing");
    // The API's own names (the listen host, a configured one) and anything outside the suffix.
    for (const reserved of ["localhost", `x.localhost`, "127.0.0.1", API_HOSTNAME, "app.example.org"]) {
      await rejectsWith(createWithDomains(bob, [{ domain: reserved, vmPort: 80 }]), "CreateVmBadRequestError", "CREATE_VM_BAD_REQUEST");
    }

    // The pattern's brackets keep it from matching this shell's own command line.
    const stop = await server.engine.guest.exec(id, { command: `pkill -f 'dev-app[.]js'; for i in $(seq 100); do pgrep -f 'dev-app[.]js' >/dev/null || exit 0; sleep 0.05; done; exit 1` });
    assert.equal(stop.exitCode, 0);
    const down = await fetchHost(url, domain, "/");
    assert.equal(down.status, 502);
    assert.equal(down.headers[PROXY_ERROR_HEADER], "NOTHING_LISTENS");
    assert.match(down.body.toString(), new RegExp(`Nothing listens on port ${APP_PORT}`));

    await created.vm.delete();
    const gone = await fetchHost(url, domain, "/healthz");
    assert.equal(gone.status, 200, "a freed name is the API's again");
    const taken = await createWithDomains(bob, [{ domain, vmPort: 80 }]);
    assert.deepEqual(taken.domains, [domain], "deleting the VM freed the name");
    await taken.vm.delete();
  });
});

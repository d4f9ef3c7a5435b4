/**
 * The preview proxy's data path over a stand-in gateway (no sandbox): the gateway's open() is
 * held at will, its tunnel is a TCP connection to a local server playing the VM's, and each
 * release is counted. What is checked is what a hostile client or VM can do to the host side:
 * hang up while the tunnel opens, or answer with bytes Node refuses to write.
 */
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { after, test } from "node:test";
import pino from "pino";
import type { GuestGateway } from "../src/guest/gateway.js";
import { PROXY_ERROR_HEADER } from "../src/preview/pages.js";
import type { Grant } from "../src/preview/access.js";
import { DEFAULT_PROXY_LIMITS, PreviewProxy, type GrantCheck, type ProxyTarget } from "../src/preview/proxy.js";

const OWN = { cookies: ["capsule_preview", "capsule_console"], queryParams: ["capsule_share"] };
const OWNER = { id: "acct1", name: "alice" };
const TARGET: ProxyTarget = { owner: OWNER, vmId: "vm1", port: 3000, grant: { kind: "key", keyId: "k1" } };

/** Grants the test withdraws at will (by their JSON). */
class FakeGrants implements GrantCheck {
  readonly withdrawn = new Set<string>();
  readonly #listeners: Array<() => void> = [];
  stillGranted(grant: Grant): boolean {
    return !this.withdrawn.has(JSON.stringify(grant));
  }
  onWithdrawn(f: () => void): void {
    this.#listeners.push(f);
  }
  withdraw(grant: Grant): void {
    this.withdrawn.add(JSON.stringify(grant));
    for (const f of this.#listeners) f();
  }
}

/** The grant a test request carries (`x-test-grant: share:<id>` or `public`); the owner's key otherwise. */
function targetOf(req: http.IncomingMessage): ProxyTarget {
  const g = req.headers["x-test-grant"];
  if (g === "public") return { ...TARGET, grant: { kind: "public" } };
  if (typeof g === "string" && g.startsWith("share:")) return { ...TARGET, grant: { kind: "share", shareId: g.slice(6) } };
  return TARGET;
}

/** A stand-in gateway: open() waits for `gate` (when set), then connects to the VM's server. */
class FakeGateway {
  opened = 0;
  released = 0;
  gate: Promise<void> | undefined;
  constructor(private readonly vmPort: () => number) {}

  async open<T>(_account: unknown, _vmId: string, _opts: unknown, fn: (vm: unknown, guest: unknown) => Promise<T>) {
    this.opened++;
    await this.gate;
    const guest = {
      connectTcp: () =>
        new Promise<net.Socket>((resolve, reject) => {
          const sock = net.connect(this.vmPort(), "127.0.0.1", () => resolve(sock.pause()));
          sock.once("error", reject);
        }),
    };
    const value = await fn({ id: "vm1", row: { desired: "running" }, running: true }, guest);
    let done = false;
    return {
      vm: {},
      value,
      release: () => {
        if (!done) this.released++;
        done = true;
      },
    };
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function listen(server: net.Server): Promise<number> {
  return new Promise((r) => server.listen(0, "127.0.0.1", () => r((server.address() as net.AddressInfo).port)));
}

/** The VM's server: `raw` answers every request with those bytes; else a plain 200, and WebSockets are accepted. */
let vmAnswer: string | undefined;
/** Every request the VM's server read: its target and body. */
const vmSeen: Array<{ url: string; body: string }> = [];
const vmServer = http.createServer((req, res) => {
  if (vmAnswer !== undefined) return res.socket?.end(vmAnswer);
  let body = "";
  req.setEncoding("latin1").on("data", (c: string) => (body += c));
  req.on("end", () => {
    vmSeen.push({ url: req.url ?? "", body });
    res.end("hello");
  });
});
/** What the VM's server answers an upgrade with (raw), then it closes. */
let vmUpgradeAnswer: string | undefined;
vmServer.on("upgrade", (_req, socket: net.Socket) => {
  if (vmUpgradeAnswer !== undefined) return socket.end(vmUpgradeAnswer);
  socket.write("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  socket.on("data", (d) => socket.write(d)); // an echo, open until the client ends it
  socket.on("end", () => socket.end());
  socket.on("error", () => undefined);
});
const vmPort = await listen(vmServer);

const gateway = new FakeGateway(() => vmPort);
const grants = new FakeGrants();
/** Anonymous connections one client may hold in these tests. */
const PER_CLIENT = 3;
const proxy = new PreviewProxy(gateway as unknown as GuestGateway, pino({ level: "silent" }), OWN, grants, { ...DEFAULT_PROXY_LIMITS, maxAnonymousConnectionsPerClient: PER_CLIENT });
const front = http.createServer((req, res) => void proxy.request(req, res, targetOf(req)).catch(() => res.destroy()));
front.on("upgrade", (req, socket, head) => void proxy.upgrade(req, socket, head, targetOf(req)).catch(() => socket.destroy()));
const frontPort = await listen(front);

after(async () => {
  proxy.close();
  front.closeAllConnections();
  vmServer.closeAllConnections();
  await Promise.all([new Promise((r) => front.close(r)), new Promise((r) => vmServer.close(r))]);
});

/** Sends raw bytes to the proxy's front; answers the socket. */
function rawClient(bytes: string): Promise<net.Socket> {
  return new Promise((resolve) => {
    const sock = net.connect(frontPort, "127.0.0.1", () => {
      sock.write(bytes);
      resolve(sock);
    });
    sock.on("error", () => undefined);
  });
}

function get(path = "/"): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ port: frontPort, host: "127.0.0.1", path, agent: false }, (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      })
      .on("error", reject);
  });
}

test("a client that hangs up while its tunnel opens frees the account's slot and the VM's hold (request and upgrade)", { timeout: 20_000 }, async () => {
  for (const kind of ["request", "upgrade"] as const) {
    let open!: () => void;
    gateway.gate = new Promise((r) => (open = r));
    const before = { opened: gateway.opened, released: gateway.released };
    const sock = await rawClient(kind === "request" ? "GET / HTTP/1.1\r\nHost: x\r\n\r\n" : "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
    await until("the gateway's open", () => gateway.opened === before.opened + 1);
    assert.equal(proxy.openConnections, 1, `${kind}: the slot is taken while the tunnel opens`);
    sock.destroy();
    await sleep(50); // the server sees the hang-up
    open();
    await until(`${kind}: the release`, () => gateway.released === before.released + 1);
    assert.equal(proxy.openConnections, 0, `${kind}: the account's slot is free again`);
  }
  gateway.gate = undefined;
  // The proxy still serves.
  assert.equal((await get()).body, "hello");
  await until("the last release", () => gateway.released === gateway.opened && proxy.openConnections === 0);
});

test("a VM's reason phrase never reaches the client; headers Node refuses to write are a 502 page, not a crash", { timeout: 20_000 }, async () => {
  try {
    vmAnswer = "HTTP/1.1 200 O\x01K\r\nContent-Length: 2\r\n\r\nhi";
    const reason = await get();
    assert.equal(reason.status, 200);
    assert.equal(reason.body, "hi");
    vmAnswer = "HTTP/1.1 200 OK\r\nX-Bad: a\x01b\r\nContent-Length: 2\r\n\r\nhi";
    const bad = await get();
    assert.equal(bad.status, 502);
    assert.equal(bad.headers[PROXY_ERROR_HEADER], "BAD_GATEWAY");
  } finally {
    vmAnswer = undefined;
  }
  await until("every release", () => gateway.released === gateway.opened && proxy.openConnections === 0);
});

test("an upgrade's answer: the VM's reason phrase is replaced, a header Node refuses is a 502 page", { timeout: 20_000 }, async () => {
  const upgradeOnce = async (answer: string): Promise<string> => {
    vmUpgradeAnswer = answer;
    const sock = await rawClient("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    let got = "";
    sock.setEncoding("latin1").on("data", (c: string) => (got += c));
    await new Promise((r) => sock.once("close", r));
    return got;
  };
  try {
    const ok = await upgradeOnce("HTTP/1.1 101 Sw\x01itching\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert.match(ok, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.ok(!ok.includes("\x01"), "no control byte of the VM's reaches the client");
    const bad = await upgradeOnce("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Bad: a\x01b\r\n\r\n");
    assert.match(bad, /^HTTP\/1\.1 502 /);
    assert.ok(!bad.includes("\x01"));
    const refused = await upgradeOnce("HTTP/1.1 400 B\x01ad\r\nContent-Length: 0\r\n\r\n");
    assert.match(refused, /^HTTP\/1\.1 400 Bad Request\r\n/);
  } finally {
    vmUpgradeAnswer = undefined;
  }
  await until("every release", () => gateway.released === gateway.opened && proxy.openConnections === 0);
});

/** An upgrade through the proxy with that grant: the client socket once the 101 arrived. */
async function openSocket(grant: string | undefined): Promise<{ sock: net.Socket; head: string }> {
  const sock = await rawClient(`GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n${grant ? `x-test-grant: ${grant}\r\n` : ""}\r\n`);
  let head = "";
  sock.setEncoding("latin1");
  await new Promise<void>((resolve) => {
    const onData = (c: string) => {
      head += c;
      if (head.includes("\r\n\r\n")) {
        sock.off("data", onData);
        resolve();
      }
    };
    sock.on("data", onData);
    sock.once("close", () => resolve());
  });
  return { sock, head };
}

const closed = (sock: net.Socket) => (sock.destroyed ? Promise.resolve() : new Promise((r) => sock.once("close", r)));

test("a live WebSocket closes when its share is revoked or its port made private; the owner's stays", { timeout: 20_000 }, async () => {
  const shared = await openSocket("share:s1");
  const other = await openSocket("share:s2");
  const pub = await openSocket("public");
  const owners = await openSocket(undefined);
  for (const s of [shared, other, pub, owners]) assert.match(s.head, /^HTTP\/1\.1 101 /);
  grants.withdraw({ kind: "share", shareId: "s1" });
  await closed(shared.sock);
  grants.withdraw({ kind: "public" });
  await closed(pub.sock);
  assert.ok(!other.sock.destroyed && !owners.sock.destroyed, "other grants' sockets stay open");
  other.sock.write("ping");
  assert.equal(await new Promise((r) => other.sock.once("data", r)), "ping", "and still carry bytes");
  // A withdrawal seen only by the periodic check (another process revoked a key).
  grants.withdrawn.add(JSON.stringify(TARGET.grant));
  proxy.checkGrants();
  await closed(owners.sock);
  other.sock.destroy();
  grants.withdrawn.clear();
  await until("every release", () => gateway.released === gateway.opened && proxy.openConnections === 0);
});

test("anonymous connections are capped per client address; the owner's key is not", { timeout: 20_000 }, async () => {
  const held = [await openSocket("share:a"), await openSocket("public"), await openSocket("share:b")];
  for (const s of held) assert.match(s.head, /^HTTP\/1\.1 101 /);
  const over = await openSocket("share:a");
  assert.match(over.head, /^HTTP\/1\.1 429 /, `at most ${PER_CLIENT} per client without the key`);
  const owners = await openSocket(undefined);
  assert.match(owners.head, /^HTTP\/1\.1 101 /, "the owner's key is counted only against the account");
  for (const s of [...held, owners, over]) s.sock.destroy();
  await until("every release", () => gateway.released === gateway.opened && proxy.openConnections === 0);
  const again = await openSocket("public");
  assert.match(again.head, /^HTTP\/1\.1 101 /, "closed connections give their slots back");
  again.sock.destroy();
  await until("the last release", () => gateway.released === gateway.opened && proxy.openConnections === 0);
});

test("a GET with a chunked body reaches the VM as one request with that body, not as a smuggled second request", { timeout: 20_000 }, async () => {
  vmSeen.length = 0;
  const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
  const chunk = `${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`;
  const sock = await rawClient(`GET /first HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunk}`);
  let got = "";
  sock.setEncoding("latin1").on("data", (c: string) => (got += c));
  await new Promise((r) => sock.once("close", r));
  assert.match(got, /^HTTP\/1\.1 200 /);
  await sleep(100); // a smuggled request would arrive right after
  assert.deepEqual(vmSeen, [{ url: "/first", body: smuggled }]);
  await until("every release", () => gateway.released === gateway.opened && proxy.openConnections === 0);
});

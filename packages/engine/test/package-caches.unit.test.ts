import assert from "node:assert/strict";
import { once } from "node:events";
import fs from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { text } from "node:stream/consumers";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { guestCacheFile } from "../src/caches/guest-config.js";
import { MAX_CONNECTIONS_PER_SOURCE, parseRegistryPath, PrefixRewrite, startNpmCache, upstreamUrl, type NpmCache } from "../src/caches/npm-cache.js";
import { PACKAGE_CACHE_PORTS } from "../src/caches/ports.js";
import { firewallRuleset } from "../src/net/firewall.js";

describe("npm registry paths", () => {
  it("parses what npm asks for", () => {
    assert.deepEqual(parseRegistryPath("/left-pad"), { kind: "metadata", name: "left-pad" });
    assert.deepEqual(parseRegistryPath("/@types%2fnode"), { kind: "metadata", name: "@types/node" });
    assert.deepEqual(parseRegistryPath("/@types%2Fnode"), { kind: "metadata", name: "@types/node" });
    assert.deepEqual(parseRegistryPath("/@types/node"), { kind: "metadata", name: "@types/node" });
    assert.deepEqual(parseRegistryPath("/JSONStream"), { kind: "metadata", name: "JSONStream" });
    assert.deepEqual(parseRegistryPath("/left-pad/-/left-pad-1.3.0.tgz"), { kind: "tarball", name: "left-pad", file: "left-pad-1.3.0.tgz" });
    assert.deepEqual(parseRegistryPath("/@types/node/-/node-20.1.0.tgz?x=1"), { kind: "tarball", name: "@types/node", file: "node-20.1.0.tgz" });
  });

  it("refuses everything else", () => {
    for (const p of [
      "",
      "/",
      "left-pad",
      "/..",
      "/../etc/passwd",
      "/.bin",
      "/a%2fb",
      "/@x%2f..%2fy",
      "/@x/../y",
      "/%2e%2e",
      "/left-pad/-/other-1.0.0.tgz",
      "/left-pad/-/left-pad-1.0.0.tar",
      "/left-pad/-/../../x.tgz",
      "/left-pad/-/left-pad-1.0.0.tgz/more",
      "/left-pad/1.0.0",
      "/-/npm/v1/security/advisories/bulk",
      "/-/whoami",
      "/@Types/node",
      "/a b",
      `/${"a".repeat(215)}`,
      "http://example.com/left-pad",
    ]) {
      assert.equal(parseRegistryPath(p), undefined, p);
    }
  });

  it("rebuilds upstream URLs from the validated name only", () => {
    assert.equal(upstreamUrl("https://registry.npmjs.org", { kind: "metadata", name: "@types/node" }), "https://registry.npmjs.org/@types%2fnode");
    assert.equal(upstreamUrl("https://registry.npmjs.org", { kind: "tarball", name: "@types/node", file: "node-1.0.0.tgz" }), "https://registry.npmjs.org/@types/node/-/node-1.0.0.tgz");
  });

  it("rewrites tarball URLs, also across chunk boundaries", async () => {
    const doc = `{"a":{"tarball":"https://registry.npmjs.org/x/-/x-1.tgz"},"b":"see https://registry.npmjs.org/x (text, kept)","c":"é"}`;
    const bytes = Buffer.from(doc);
    for (let cut = 1; cut < bytes.length; cut++) {
      const out = await text(Readable.from([bytes.subarray(0, cut), bytes.subarray(cut)]).pipe(new PrefixRewrite("https://registry.npmjs.org", "http://h:4873")));
      assert.equal(out, doc.replace('"https://registry.npmjs.org/x', '"http://h:4873/x'), `cut at ${cut}`);
    }
  });
});

describe("npm cache against a fake upstream", () => {
  const served: string[] = [];
  let upstreamUp = true;
  let upstream: http.Server;
  let cache: NpmCache;
  let dir: string;
  const packument = (name: string) => JSON.stringify({ name, versions: { "1.0.0": { dist: { tarball: `UP/${name}/-/${name}-1.0.0.tgz` } } } });
  let upstreamBase = "";
  const get = async (p: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`http://127.0.0.1:${cache.port}${p}`, { headers });
    return { status: res.status, body: await res.text() };
  };

  before(async () => {
    upstream = http.createServer((req, res) => {
      served.push(`${req.url} ${req.headers.accept}`);
      if (!upstreamUp) return void res.writeHead(503).end();
      if (req.url === "/missing") return void res.writeHead(404).end();
      if (req.url === "/redirect") return void res.writeHead(302, { location: "http://127.0.0.1:1/" }).end();
      if (req.url === "/huge/-/huge-1.0.0.tgz") return void res.writeHead(200, { "content-length": String(600 * 1024 * 1024) }).end();
      if (req.url?.endsWith(".tgz")) return void res.writeHead(200).end(Buffer.alloc(40 * 1024, 7));
      res.writeHead(200, { "content-type": "application/json" }).end(packument(req.url!.slice(1)).replaceAll("UP", upstreamBase));
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    upstreamBase = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`;
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-npm-cache-"));
    cache = await startNpmCache({ dir, maxBytes: 100 * 1024, publicUrl: "http://host.capsule.internal:4873", upstream: upstreamBase }, { host: "127.0.0.1", port: 0 });
  });
  after(async () => {
    await cache.close();
    await new Promise((r) => upstream.close(r));
    await fs.rm(dir, { recursive: true, force: true });
  });

  it("fetches once, serves from disk after, rewrites tarball URLs to itself", async () => {
    const corgi = { accept: "application/vnd.npm.install-v1+json" };
    const a = await get("/pkg", corgi);
    const b = await get("/pkg", corgi);
    assert.equal(a.status, 200);
    assert.equal(a.body, b.body);
    assert.match(a.body, /"tarball":"http:\/\/host\.capsule\.internal:4873\/pkg\/-\/pkg-1\.0\.0\.tgz"/);
    assert.equal(served.filter((s) => s.startsWith("/pkg ")).length, 1);
    assert.match(served.find((s) => s.startsWith("/pkg "))!, /install-v1/);
    await Promise.all([get("/pkg/-/pkg-1.0.0.tgz"), get("/pkg/-/pkg-1.0.0.tgz")]); // one download for both
    const t = await get("/pkg/-/pkg-1.0.0.tgz");
    assert.equal(t.body.length, 40 * 1024);
    assert.equal(served.filter((s) => s.startsWith("/pkg/-/")).length, 1);
    const s = cache.stats();
    assert.equal(s.metadataHits, 1);
    assert.equal(s.tarballMisses, 2);
    assert.equal(s.tarballHits, 1);
  });

  it("passes a 404 on, refuses redirects and files over the limit, and serves stale metadata when the registry is down", async () => {
    assert.equal((await get("/missing")).status, 404);
    assert.equal((await get("/redirect")).status, 502);
    assert.equal((await get("/huge/-/huge-1.0.0.tgz")).status, 502);
    assert.deepEqual(await fs.readdir(dir).then((names) => names.filter((n) => n.startsWith("tmp-"))), []);
    // A second cache over the same directory, for which everything on disk is already stale.
    const staleCache = await startNpmCache({ dir, maxBytes: 100 * 1024, publicUrl: "http://h", upstream: upstreamBase, metadataFreshMs: 0 }, { host: "127.0.0.1", port: 0 });
    upstreamUp = false;
    try {
      const ask = (p: string) => fetch(`http://127.0.0.1:${staleCache.port}${p}`, { headers: { accept: "application/vnd.npm.install-v1+json" } });
      assert.equal((await ask("/never-seen")).status, 502);
      const stale = await ask("/pkg");
      assert.equal(stale.status, 200);
      assert.match(await stale.text(), /"tarball":"http:\/\/h\/pkg/);
      assert.equal(staleCache.stats().metadataStale, 1);
    } finally {
      upstreamUp = true;
      await staleCache.close();
    }
  });

  it("evicts least recently used files past its bound", async () => {
    for (const n of ["e1", "e2", "e3"]) assert.equal((await get(`/${n}/-/${n}-1.0.0.tgz`)).status, 200);
    assert.ok(cache.stats().bytesCached <= 100 * 1024, `${cache.stats().bytesCached} bytes kept`);
    assert.ok(cache.stats().evictions >= 1);
    assert.equal((await get("/e3/-/e3-1.0.0.tgz")).status, 200);
  });

  it("answers GET and HEAD only, and keeps its stats to the host", async () => {
    const post = await fetch(`http://127.0.0.1:${cache.port}/pkg`, { method: "POST", body: "x" });
    assert.equal(post.status, 405);
    assert.equal((await fetch(`http://127.0.0.1:${cache.port}/pkg`, { method: "HEAD" })).status, 200);
    assert.equal((await get("/-/capsule/stats")).status, 200); // from 127.0.0.1; a VM's source is its own address
  });
});

describe("package cache wiring", () => {
  it("scripts/package-caches.sh listens where the engine forwards", async () => {
    const script = await fs.readFile(fileURLToPath(new URL("../../../../scripts/package-caches.sh", import.meta.url)), "utf8");
    assert.match(script, new RegExp(`^APT_LISTEN_PORT=${PACKAGE_CACHE_PORTS.apt.listen}$`, "m"));
    assert.match(script, new RegExp(`^NPM_LISTEN_PORT=${PACKAGE_CACHE_PORTS.npm.listen}$`, "m"));
    assert.match(script, new RegExp(`^NPM_GUEST_PORT=${PACKAGE_CACHE_PORTS.npm.guest}$`, "m"));
  });

  it("the ruleset DNATs only members' own-gateway connections on the guest ports, to loopback", () => {
    const rules = firewallRuleset();
    for (const c of Object.values(PACKAGE_CACHE_PORTS)) {
      assert.ok(rules.includes(`iifname . ip daddr @pkgcache tcp dport ${c.guest} dnat ip to 127.0.0.1:${c.listen}`));
    }
    const input = rules.slice(rules.indexOf("chain input"));
    const dnatAccept = input.indexOf("ct status dnat");
    assert.ok(dnatAccept > 0 && dnatAccept < input.indexOf("ip daddr 127.0.0.0/8 counter reject"), "loopback is closed but for the DNAT");
    assert.ok(input.indexOf("ip daddr 127.0.0.0/8 counter reject") < input.indexOf("vmap @vm_in"), "before any policy or allowed port");
    // route_localnet makes a VM's loopback-sourced packets no martians, and an established
    // connection's accept must not let a packet to loopback through that no DNAT made.
    const guard = rules.slice(rules.indexOf("chain guard"), rules.indexOf("chain input"));
    assert.match(guard, /type filter hook prerouting priority raw;[\s\S]*iifname "cv\*" ip saddr 127\.0\.0\.0\/8 counter drop/);
    const notDnat = input.indexOf('iifname "cv*" ip daddr 127.0.0.0/8 ct status & dnat == 0 counter reject');
    assert.ok(notDnat > 0 && notDnat < input.indexOf("ct state established,related accept"), "before the established accept");
  });

  it("the guest configs point apt and npm at host.capsule.internal", () => {
    assert.match(guestCacheFile("apt").content, /^Acquire::http::Proxy "http:\/\/host\.capsule\.internal:3142\/";$/m);
    assert.match(guestCacheFile("npm").content, /^registry=http:\/\/host\.capsule\.internal:4873\/$/m);
  });
});

describe("npm cache: one VM cannot hold every connection", () => {
  const stallMs = 1000;
  let upstream: http.Server;
  let cache: NpmCache;
  let dir: string;
  const connect = (localAddress = "127.0.0.1") =>
    new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: "127.0.0.1", port: cache.port, localAddress }, () => resolve(s));
      s.once("error", reject);
    });
  const closedWithin = (s: net.Socket, ms: number) =>
    new Promise<boolean>((resolve) => {
      if (s.destroyed) return resolve(true);
      const timer = setTimeout(() => resolve(false), ms);
      s.once("close", () => (clearTimeout(timer), resolve(true)));
    });

  before(async () => {
    upstream = http.createServer((_req, res) => void res.writeHead(200).end(Buffer.alloc(8 * 1024 * 1024, 1)));
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-npm-cache-limits-"));
    const upstreamBase = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`;
    cache = await startNpmCache({ dir, maxBytes: 64 * 1024 * 1024, publicUrl: "http://h", upstream: upstreamBase, clientStallMs: stallMs }, { host: "127.0.0.1", port: 0 });
  });
  after(async () => {
    await cache.close();
    await new Promise((r) => upstream.close(r));
    await fs.rm(dir, { recursive: true, force: true });
  });

  it("caps the connections of one source address; another source still gets in", async () => {
    const held = await Promise.all(Array.from({ length: MAX_CONNECTIONS_PER_SOURCE }, () => connect()));
    const extra = await connect();
    assert.ok(await closedWithin(extra, 500), "the connection over the cap is closed at once");
    const other = await fetch(`http://127.0.0.1:${cache.port}/-/capsule/stats`).catch(() => undefined);
    assert.equal(other, undefined, "the same source is still at its cap");
    const fromElsewhere = await connect("127.0.0.2");
    fromElsewhere.write("HEAD /pkg/-/pkg-1.0.0.tgz HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n");
    const [head] = (await once(fromElsewhere, "data")) as [Buffer];
    assert.match(head.toString(), /^HTTP\/1\.1 200/);
    for (const s of held) s.destroy();
  });

  it("closes a connection whose client stops reading a body", async () => {
    const reader = await connect();
    reader.pause(); // never reads: the 8 MiB body fills the socket buffers and the write stalls
    reader.write("GET /pkg/-/pkg-1.0.0.tgz HTTP/1.1\r\nhost: h\r\n\r\n");
    assert.ok(await closedWithin(reader, stallMs * 4), "the stalled connection was closed");
  });
});

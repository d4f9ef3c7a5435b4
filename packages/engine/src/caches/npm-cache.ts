/**
 * A small, strict caching proxy for the npm registry, for VMs without internet: `npm install`
 * in a VM goes to `http://host.capsule.internal:4873`, which the firewall forwards to this
 * server on the host's loopback. It fetches only from one upstream registry, and only two kinds
 * of file: a package's metadata document (a "packument") and a package tarball. Requests are
 * treated as hostile: GET/HEAD only, no request body, the path parsed into a validated package
 * name (and tarball file name) from which the upstream URL is rebuilt, nothing of the client's
 * request (headers, query, bytes) forwarded, no redirects followed, every download bounded in
 * size and time. Tarball URLs inside metadata are rewritten to point back at this cache.
 * Tarballs are immutable and kept until evicted (least recently used, past `maxBytes`);
 * metadata is fresh for {@link METADATA_FRESH_MS} and served stale when the upstream fails.
 *
 * Imports nothing but Node's own modules: scripts/package-caches.sh installs the compiled file
 * outside the repository and runs it as an unprivileged user.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import fs, { type FileHandle } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import { Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";

export const NPM_UPSTREAM = "https://registry.npmjs.org";
/** A metadata document this old is fetched again (npm's own cache uses 5 minutes too). */
export const METADATA_FRESH_MS = 5 * 60_000;
/** The largest metadata document fetched (full packuments of big packages reach tens of MB). */
export const MAX_METADATA_BYTES = 128 * 1024 * 1024;
/** The largest tarball fetched (the native Claude Code package is about 190 MB). */
export const MAX_TARBALL_BYTES = 512 * 1024 * 1024;
/** Upstream: until its response headers, and between body chunks. */
export const UPSTREAM_HEADERS_MS = 30_000;
export const UPSTREAM_IDLE_MS = 60_000;
/** Downloads running at once; more wait (each is a file being written). */
export const MAX_UPSTREAM_FETCHES = 8;
/** Client connections at once, and how long a client may take to send its request head. */
export const MAX_CONNECTIONS = 256;
export const CLIENT_HEADERS_MS = 10_000;
/**
 * Connections one source address may hold at once (npm opens 15 or so by default): a VM arrives
 * DNATed with its own address, so one VM cannot take every connection from the others.
 */
export const MAX_CONNECTIONS_PER_SOURCE = 32;
/**
 * A connection with no bytes moving either way this long is closed: idle, or a client that
 * stopped reading a body (its socket buffer full), which would otherwise hold its slot forever.
 */
export const CLIENT_STALL_MS = 30_000;
/** npm's name rules: at most 214 characters; legacy names may have capitals. */
const MAX_NAME = 214;
const SCOPE = /^@[a-z0-9][a-z0-9._~-]*$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._~-]*$/;
const TARBALL = /^[A-Za-z0-9][A-Za-z0-9._~-]*\.tgz$/;
/** What npm asks for on install: the abbreviated ("corgi") metadata. */
const CORGI = "application/vnd.npm.install-v1+json";

export type RegistryRequest = { kind: "metadata"; name: string } | { kind: "tarball"; name: string; file: string };

/**
 * A request path as npm sends it (`/left-pad`, `/@types%2fnode`, `/@types/node`,
 * `/left-pad/-/left-pad-1.3.0.tgz`, `/@types/node/-/node-20.0.0.tgz`), or undefined for
 * anything else. The name and file are checked against npm's character set, so the upstream
 * URL built from them has no other path, query or host in it.
 */
export function parseRegistryPath(rawPath: string): RegistryRequest | undefined {
  const q = rawPath.indexOf("?");
  const p = q === -1 ? rawPath : rawPath.slice(0, q);
  if (!p.startsWith("/")) return undefined;
  const parts = p.slice(1).replace(/^(@[^/%]+)%2[fF]/, "$1/").split("/");
  const scoped = parts[0]?.startsWith("@") === true;
  const nameParts = scoped ? 2 : 1;
  const name = parts.slice(0, nameParts).join("/");
  if (!validName(name)) return undefined;
  const rest = parts.slice(nameParts);
  if (rest.length === 0) return { kind: "metadata", name };
  const base = name.split("/").pop() ?? "";
  const [dash, file, ...more] = rest;
  if (dash !== "-" || file === undefined || more.length > 0 || !TARBALL.test(file) || !file.startsWith(`${base}-`)) return undefined;
  return { kind: "tarball", name, file };
}

function validName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_NAME) return false;
  const parts = name.split("/");
  if (parts.length === 2) return SCOPE.test(parts[0] ?? "") && NAME.test(parts[1] ?? "");
  return parts.length === 1 && NAME.test(name);
}

/** The upstream URL of a validated request. */
export function upstreamUrl(upstream: string, r: RegistryRequest): string {
  if (r.kind === "metadata") return `${upstream}/${r.name.replace("/", "%2f")}`;
  return `${upstream}/${r.name}/-/${r.file}`;
}

/**
 * Rewrites `"<from>/` to `"<to>/` in a byte stream (tarball URLs in metadata), keeping the last
 * bytes of each chunk back in case a match straddles two chunks.
 */
export class PrefixRewrite extends Transform {
  private carry = "";
  private readonly from: string;
  private readonly to: string;
  constructor(from: string, to: string) {
    super();
    this.from = `"${from}/`;
    this.to = `"${to}/`;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    // latin1 keeps every byte as one char, so UTF-8 split across chunks survives untouched.
    const text = (this.carry + chunk.toString("latin1")).split(this.from).join(this.to);
    const keep = Math.min(text.length, this.from.length - 1);
    this.carry = text.slice(text.length - keep);
    done(null, Buffer.from(text.slice(0, text.length - keep), "latin1"));
  }
  override _flush(done: TransformCallback): void {
    done(null, Buffer.from(this.carry, "latin1"));
  }
}

export interface NpmCacheOptions {
  /** Cache directory (created). */
  dir: string;
  /** Bytes of tarballs and metadata kept; least recently used files go first past it. */
  maxBytes: number;
  /** The registry URL VMs use, which tarball URLs are rewritten to (no trailing slash). */
  publicUrl: string;
  /** The upstream registry. Default {@link NPM_UPSTREAM}; tests point it at a fake. */
  upstream?: string;
  /** Default {@link METADATA_FRESH_MS}. */
  metadataFreshMs?: number;
  /** Default {@link CLIENT_STALL_MS}; tests shorten it. */
  clientStallMs?: number;
}

export interface NpmCacheStats {
  metadataHits: number;
  metadataMisses: number;
  metadataStale: number;
  tarballHits: number;
  tarballMisses: number;
  refused: number;
  upstreamErrors: number;
  evictions: number;
  bytesCached: number;
}

/** An answer other than 200: `client` when the request was refused, `upstream` when the registry's. */
class HttpFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly origin: "client" | "upstream" = status >= 500 ? "upstream" : "client",
  ) {
    super(message);
  }
}

/** A running cache; `close()` stops it. */
export interface NpmCache {
  server: http.Server;
  port: number;
  stats: () => NpmCacheStats;
  close: () => Promise<void>;
}

export async function startNpmCache(opts: NpmCacheOptions, listen: { host: string; port: number }): Promise<NpmCache> {
  const upstream = opts.upstream ?? NPM_UPSTREAM;
  const freshMs = opts.metadataFreshMs ?? METADATA_FRESH_MS;
  const store = new Store(opts.dir, opts.maxBytes);
  await store.load();
  const stats: NpmCacheStats = { metadataHits: 0, metadataMisses: 0, metadataStale: 0, tarballHits: 0, tarballMisses: 0, refused: 0, upstreamErrors: 0, evictions: 0, bytesCached: 0 };
  const inflight = new Map<string, Promise<void>>();
  const slots = new Semaphore(MAX_UPSTREAM_FETCHES);

  /** Fetches `url` into the store under `key` (one download per key at a time). */
  const fill = (key: string, url: string, accept: string, maxBytes: number): Promise<void> => {
    let p = inflight.get(key);
    if (!p) {
      p = slots.run(() => download(url, accept, maxBytes, (body) => store.put(key, body))).finally(() => inflight.delete(key));
      inflight.set(key, p);
    }
    return p;
  };

  const serve = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    if (req.method !== "GET" && req.method !== "HEAD") throw new HttpFailure(405, "only GET and HEAD");
    if (req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined) throw new HttpFailure(400, "no request body");
    const url = req.url ?? "";
    if (url === "/-/capsule/stats") {
      // The host's own monitoring only: VMs arrive here by DNAT, with their own source address.
      if (req.socket.remoteAddress !== "127.0.0.1") throw new HttpFailure(404, "not found");
      stats.bytesCached = store.bytes;
      return send(res, req.method, 200, "application/json", Buffer.from(JSON.stringify(stats)));
    }
    const r = parseRegistryPath(url);
    if (!r) throw new HttpFailure(404, "not a package metadata or tarball path");
    if (r.kind === "tarball") {
      const key = `tarball ${r.name} ${r.file}`;
      if (store.has(key)) stats.tarballHits++;
      else {
        stats.tarballMisses++;
        await fill(key, upstreamUrl(upstream, r), "application/octet-stream", MAX_TARBALL_BYTES);
      }
      return sendFile(res, req.method, "application/octet-stream", store, key);
    }
    const corgi = (req.headers.accept ?? "").includes(CORGI);
    const key = `metadata ${corgi ? "corgi" : "full"} ${r.name}`;
    const age = store.age(key);
    if (age !== undefined && age < freshMs) stats.metadataHits++;
    else {
      stats.metadataMisses++;
      try {
        await fill(key, upstreamUrl(upstream, r), corgi ? CORGI : "application/json", MAX_METADATA_BYTES);
      } catch (err) {
        if (age === undefined || (err instanceof HttpFailure && err.status === 404)) throw err;
        stats.metadataStale++; // the registry is down or slow: an older copy beats a failed install
      }
    }
    return sendFile(res, req.method, "application/json", store, key, new PrefixRewrite(upstream, opts.publicUrl));
  };

  const server = http.createServer({ headersTimeout: CLIENT_HEADERS_MS, requestTimeout: CLIENT_HEADERS_MS }, (req, res) => {
    serve(req, res).catch((err: unknown) => {
      // Once the body has begun, the failure is the client's hang-up or a local read error.
      if (res.headersSent) return void res.destroy();
      const status = err instanceof HttpFailure ? err.status : 502;
      if (err instanceof HttpFailure && err.origin === "client") stats.refused++;
      else if (status >= 500) stats.upstreamErrors++;
      send(res, req.method, status, "text/plain", Buffer.from(`${err instanceof HttpFailure ? err.message : "upstream failed"}\n`), true);
    });
  });
  server.maxConnections = MAX_CONNECTIONS;
  // Without a 'timeout' listener the server destroys a socket that stalls this long.
  server.timeout = opts.clientStallMs ?? CLIENT_STALL_MS;
  limitPerSource(server, MAX_CONNECTIONS_PER_SOURCE);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  const addr = server.address();
  if (!addr || typeof addr === "string") throw new Error("npm cache: no listening port");
  store.onEvict = () => stats.evictions++;
  return {
    server,
    port: addr.port,
    stats: () => ({ ...stats, bytesCached: store.bytes }),
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Closes a connection at once when its source address already holds `limit`. */
function limitPerSource(server: http.Server, limit: number): void {
  const open = new Map<string, number>();
  server.on("connection", (socket) => {
    const source = socket.remoteAddress ?? "";
    const n = open.get(source) ?? 0;
    if (n >= limit) return void socket.destroy();
    open.set(source, n + 1);
    socket.once("close", () => {
      const left = (open.get(source) ?? 1) - 1;
      if (left === 0) open.delete(source);
      else open.set(source, left);
    });
  });
}

function send(res: http.ServerResponse, method: string | undefined, status: number, type: string, body: Buffer, close = false): void {
  res.writeHead(status, { "content-type": type, "content-length": body.length, ...(close ? { connection: "close" } : {}) });
  res.end(method === "HEAD" ? undefined : body);
}

async function sendFile(res: http.ServerResponse, method: string | undefined, type: string, store: Store, key: string, rewrite?: Transform): Promise<void> {
  const file = await store.open(key);
  if (!file) throw new HttpFailure(502, "evicted before it could be served");
  try {
    // A rewritten body changes length, so it goes out chunked; a tarball keeps its length.
    res.writeHead(200, { "content-type": type, ...(rewrite ? {} : { "content-length": file.size }) });
    if (method === "HEAD") return void res.end();
    const body = createReadStream("", { fd: file.handle.fd, autoClose: false });
    await (rewrite ? pipeline(body, rewrite, res) : pipeline(body, res));
  } finally {
    await file.handle.close();
  }
}

/**
 * GETs `url` (no redirects, bounded time and size) and writes its body with `sink`; a 404 is a
 * 404 for the client, any other failure a 502.
 */
async function download(url: string, accept: string, maxBytes: number, sink: (body: Readable[]) => Promise<void>): Promise<void> {
  const ac = new AbortController();
  let timer = setTimeout(() => ac.abort(), UPSTREAM_HEADERS_MS);
  try {
    const res = await fetch(url, { headers: { accept, "user-agent": "capsule-npm-cache" }, redirect: "error", signal: ac.signal }).catch((err: unknown) => {
      throw new HttpFailure(502, `upstream unreachable: ${(err as Error).message}`);
    });
    if (res.status === 404) throw new HttpFailure(404, "upstream has no such package or version", "upstream");
    if (res.status !== 200 || !res.body) throw new HttpFailure(502, `upstream answered ${res.status}`);
    if (Number(res.headers.get("content-length") ?? "0") > maxBytes) throw new HttpFailure(502, `upstream file is over ${maxBytes} bytes`);
    let seen = 0;
    const guard = new Transform({
      transform(chunk: Buffer, _enc, done) {
        clearTimeout(timer);
        timer = setTimeout(() => ac.abort(), UPSTREAM_IDLE_MS);
        seen += chunk.length;
        if (seen > maxBytes) done(new HttpFailure(502, `upstream file is over ${maxBytes} bytes`));
        else done(null, chunk);
      },
    });
    await sink([Readable.fromWeb(res.body as import("node:stream/web").ReadableStream<Uint8Array>), guard]);
  } finally {
    clearTimeout(timer);
  }
}

interface Entry {
  size: number;
  /** When it was fetched (metadata freshness). */
  written: number;
  /** When it was last served (eviction order). */
  used: number;
}

/**
 * Files on disk by key (its hash names the file), with an index of sizes and times for
 * freshness and eviction, rebuilt from the directory at start. A file is written under a
 * temporary name and renamed when complete, so a crash never leaves a partial file under a
 * real name.
 */
class Store {
  private readonly index = new Map<string, Entry>();
  bytes = 0;
  onEvict: () => void = () => undefined;
  constructor(
    private readonly dir: string,
    private readonly maxBytes: number,
  ) {}

  private static name(key: string): string {
    return createHash("sha256").update(key).digest("hex");
  }

  async load(): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const name of await fs.readdir(this.dir)) {
      const p = path.join(this.dir, name);
      if (!/^[0-9a-f]{64}$/.test(name)) {
        await fs.rm(p, { force: true }); // a download a crash interrupted
        continue;
      }
      const st = await fs.stat(p);
      this.index.set(name, { size: st.size, written: st.mtimeMs, used: st.mtimeMs });
      this.bytes += st.size;
    }
  }

  has(key: string): boolean {
    return this.index.has(Store.name(key));
  }

  /** Milliseconds since the entry was fetched, or undefined if there is none. */
  age(key: string): number | undefined {
    const e = this.index.get(Store.name(key));
    return e ? Date.now() - e.written : undefined;
  }

  async open(key: string): Promise<{ handle: FileHandle; size: number } | undefined> {
    const name = Store.name(key);
    const e = this.index.get(name);
    const handle = e && (await fs.open(path.join(this.dir, name), "r").catch(() => undefined));
    if (!e || !handle) return undefined;
    e.used = Date.now();
    return { handle, size: (await handle.stat()).size };
  }

  async put(key: string, body: Readable[]): Promise<void> {
    const name = Store.name(key);
    const tmp = path.join(this.dir, `tmp-${randomBytes(8).toString("hex")}`);
    try {
      await pipeline([...body, createWriteStream(tmp, { mode: 0o600 })]);
      const { size } = await fs.stat(tmp);
      await fs.rename(tmp, path.join(this.dir, name));
      this.bytes += size - (this.index.get(name)?.size ?? 0);
      this.index.set(name, { size, written: Date.now(), used: Date.now() });
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err instanceof HttpFailure ? err : new HttpFailure(502, `download failed: ${(err as Error).message}`);
    }
    await this.evict(name);
  }

  /** Least recently used first until under the bound; never the entry just written. */
  private async evict(keep: string): Promise<void> {
    if (this.bytes <= this.maxBytes) return;
    const oldest = [...this.index.entries()].filter(([n]) => n !== keep).sort((a, b) => a[1].used - b[1].used);
    for (const [n, e] of oldest) {
      if (this.bytes <= this.maxBytes) break;
      // A response still reading the file keeps its open handle; the next request fetches again.
      await fs.rm(path.join(this.dir, n), { force: true });
      this.index.delete(n);
      this.bytes -= e.size;
      this.onEvict();
    }
  }
}

class Semaphore {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  constructor(private readonly limit: number) {}
  async run<T>(body: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    try {
      return await body();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

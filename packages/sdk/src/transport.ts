/**
 * HTTP and WebSocket plumbing shared by every handle: base URL, auth and the Linux-user header,
 * JSON requests with typed errors, raw byte requests, and authenticated WebSockets (the `ws`
 * package, so Node 20 needs no flag; loaded on the first WebSocket, so plain HTTP calls such as
 * `vms.list()` do not pay for it). JSON calls go over `node:http` unless the caller brought its
 * own fetch: loading fetch (undici, its WebAssembly parser, web streams) costs more than all the
 * rest of a `capsule vm list`, and a JSON call needs none of it. Raw bodies and streamed files use
 * fetch.
 * @module
 */
import type { ClientRequest, IncomingMessage } from "node:http";
import { pipeline, type Readable } from "node:stream";
import type WebSocket from "ws";
import { errorFromResponse, makeError, type CapsuleError } from "./errors.js";

export const LINUX_USER_HEADER = "X-Freestyle-Vm-Linux-User-Id";
export const SDK_VERSION = "0.1.0";

/** The `fetch` the SDK calls; defaults to the global one (Node 20+). */
export type FetchLike = (input: string, init?: RequestInit & { duplex?: "half" }) => Promise<Response>;

/** The global `fetch`, the default {@link FetchLike}. */
export const globalFetch: FetchLike = (input, init) => fetch(input, init as RequestInit);

/** A raw request body: bytes or a web stream of bytes. */
export type RawBody = Uint8Array | ReadableStream<Uint8Array>;

export interface RequestOpts {
  /** JSON body (sent with `Content-Type: application/json`). */
  json?: unknown;
  /** Raw body (sent as `application/octet-stream`). */
  raw?: RawBody;
  /** Linux user the call runs as (the `X-Freestyle-Vm-Linux-User-Id` header). */
  user?: string | undefined;
  /** Query parameters; undefined values are left out. */
  query?: Record<string, string | number | undefined>;
  /** More request headers (e.g. `Range`). */
  headers?: Record<string, string>;
  /** This call's idle limit instead of the client's (a call the server answers only at its end, such as a build). */
  idleTimeoutMs?: number;
}

/**
 * How long a JSON call's connection may carry nothing before the call fails. The server answers
 * a long exec-await with early headers and a keep-alive space every 30 s, so only a dead or stuck
 * server is this quiet.
 */
export const DEFAULT_IDLE_TIMEOUT_MS = 120_000;
const IDLE_CODE = "CAPSULE_IDLE_TIMEOUT";

export class Transport {
  constructor(
    readonly baseUrl: string,
    readonly apiKey: string,
    readonly fetchImpl: FetchLike,
    readonly idleTimeoutMs: number = DEFAULT_IDLE_TIMEOUT_MS,
  ) {}

  url(path: string, query?: Record<string, string | number | undefined>): string {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) q.set(k, String(v));
    const qs = q.toString();
    return `${this.baseUrl}${path}${qs ? `?${qs}` : ""}`;
  }

  headers(user?: string, extra: Record<string, string> = {}): Record<string, string> {
    return {
      authorization: `Bearer ${this.apiKey}`,
      "user-agent": `capsule-sdk-ts/${SDK_VERSION}`,
      ...(user ? { [LINUX_USER_HEADER]: user } : {}),
      ...extra,
    };
  }

  /** Sends a request; non-2xx answers become typed errors. Answers the raw Response. */
  async send(method: string, path: string, opts: RequestOpts = {}): Promise<Response> {
    const what = `${method} ${path}`;
    const extra: Record<string, string> = { ...opts.headers };
    let body: string | RawBody | undefined;
    if (opts.json !== undefined) {
      extra["content-type"] = "application/json";
      body = JSON.stringify(opts.json);
    } else if (opts.raw !== undefined) {
      extra["content-type"] = "application/octet-stream";
      body = opts.raw;
    }
    let res: Response;
    try {
      res = await this.fetchImpl(this.url(path, opts.query), {
        method,
        headers: this.headers(opts.user, extra),
        ...(body !== undefined ? { body: body as RequestInit["body"] } : {}),
        ...(body instanceof ReadableStream ? { duplex: "half" as const } : {}),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw makeError("NETWORK_ERROR", `${what}: cannot reach ${this.baseUrl} (${cause?.code ?? cause?.message ?? (err as Error).message})`, { cause: err });
    }
    if (!res.ok) throw errorFromResponse(res.status, await res.text().catch(() => ""), what);
    return res;
  }

  /** A JSON request answering parsed JSON. */
  async json<T>(method: string, path: string, opts: RequestOpts = {}): Promise<T> {
    const text = this.fetchImpl === globalFetch && opts.raw === undefined ? await this.#nodeHttp(method, path, opts) : await (await this.send(method, path, opts)).text();
    try {
      return JSON.parse(text) as T;
    } catch {
      throw makeError("BAD_RESPONSE", `${method} ${path}: the answer is not JSON: ${text.slice(0, 200)}`);
    }
  }

  /** `send()` + `text()` over node:http(s): the same request and the same typed errors, without loading fetch. */
  async #nodeHttp(method: string, path: string, opts: RequestOpts): Promise<string> {
    const what = `${method} ${path}`;
    const url = this.url(path, opts.query);
    const body = opts.json !== undefined ? JSON.stringify(opts.json) : undefined;
    const headers = this.headers(opts.user, body !== undefined ? { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) } : {});
    const request: typeof import("node:http").request = url.startsWith("https:") ? (await import("node:https")).request : (await import("node:http")).request;
    const idleMs = opts.idleTimeoutMs ?? this.idleTimeoutMs;
    let answer: { status: number; text: string };
    try {
      answer = await new Promise((resolve, reject) => {
        const req = request(url, { method, headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
          res.on("error", reject); // the connection dropped mid-answer
        });
        req.on("error", reject);
        req.setTimeout(idleMs, () => req.destroy(Object.assign(new Error(`no data for ${idleMs} ms`), { code: IDLE_CODE })));
        req.end(body);
      });
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === IDLE_CODE) throw makeError("NETWORK_ERROR", `${what}: ${this.baseUrl} sent nothing for ${idleMs} ms; the call was given up`, { cause: err });
      throw makeError("NETWORK_ERROR", `${what}: cannot reach ${this.baseUrl} (${code ?? (err as Error).message})`, { cause: err });
    }
    if (answer.status < 200 || answer.status > 299) throw errorFromResponse(answer.status, answer.text, what);
    return answer.text;
  }

  /** Whether raw bytes go over `node:http` ({@link stream}) rather than fetch: unless the caller brought its own fetch. */
  get nodeStreams(): boolean {
    return this.fetchImpl === globalFetch;
  }

  /**
   * A raw request over node:http(s): `body` (bytes, or a Node stream sent chunked with its
   * backpressure) out, the answer's body as the IncomingMessage, which is a Node stream already.
   * Fetch would put both through web streams and undici's parser, which cost more CPU than the
   * bytes (4x the client's CPU on a 100 MB download here). Non-2xx answers become typed errors
   * and stop the upload. No idle timeout: a reader that stops reading stops the transfer too.
   */
  async stream(method: string, path: string, opts: { user?: string | undefined; query?: RequestOpts["query"]; headers?: RequestOpts["headers"]; body?: Uint8Array | Readable } = {}): Promise<IncomingMessage> {
    const what = `${method} ${path}`;
    const url = this.url(path, opts.query);
    const { body } = opts;
    const extra: Record<string, string> = { ...opts.headers, ...(body === undefined ? {} : { "content-type": "application/octet-stream" }) };
    if (body instanceof Uint8Array) extra["content-length"] = String(body.byteLength);
    const request: typeof import("node:http").request = url.startsWith("https:") ? (await import("node:https")).request : (await import("node:http")).request;
    let req: ClientRequest | undefined;
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      req = request(url, { method, headers: this.headers(opts.user, extra) }, resolve);
      req.on("error", (err: Error & { code?: string }) => reject(makeError("NETWORK_ERROR", `${what}: cannot reach ${this.baseUrl} (${err.code ?? err.message})`, { cause: err })));
      if (body === undefined || body instanceof Uint8Array) req.end(body);
      else pipeline(body, req, () => undefined); // a failed upload surfaces as the request's error or the answer
    });
    const status = res.statusCode ?? 0;
    if (status >= 200 && status <= 299) return res;
    const chunks: Buffer[] = [];
    const text = await new Promise<string>((resolve) => {
      res.on("data", (c: Buffer) => chunks.push(c));
      res.once("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
      res.once("error", () => resolve(Buffer.concat(chunks).toString("utf8")));
    });
    req?.destroy(); // an upload the server refused goes no further
    throw errorFromResponse(status, text, what);
  }

  /** Opens an authenticated WebSocket; handshake refusals reject with the server's typed error. */
  async websocket(path: string, query: Record<string, string | number | undefined>, user: string | undefined, onMessage: (data: Buffer, isBinary: boolean) => void): Promise<WebSocket> {
    const url = this.url(path, query).replace(/^http(s?):\/\//, "ws$1://");
    const { default: WebSocketImpl } = await import("ws");
    const ws = new WebSocketImpl(url, { headers: this.headers(user), perMessageDeflate: false });
    // Listen from the start: frames can follow the handshake before the caller has the socket.
    ws.on("message", (data: WebSocket.RawData, isBinary: boolean) => onMessage(Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer), isBinary));
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (e: CapsuleError) => {
        if (settled) return;
        settled = true;
        ws.terminate();
        reject(e);
      };
      ws.once("open", () => {
        settled = true;
        resolve(ws);
      });
      ws.once("unexpected-response", (_req, res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => fail(errorFromResponse(res.statusCode ?? 0, Buffer.concat(chunks).toString("utf8"), `WebSocket ${path}`)));
        res.on("error", () => fail(errorFromResponse(res.statusCode ?? 0, "", `WebSocket ${path}`)));
      });
      ws.on("error", (err: Error & { code?: string }) => fail(makeError("NETWORK_ERROR", `WebSocket ${path}: cannot reach ${this.baseUrl} (${err.code ?? err.message})`, { cause: err })));
    });
  }
}

/** Encodes a VM path (leading slash included) as one URL segment, as the Freestyle client does. */
export function seg(s: string): string {
  return encodeURIComponent(s);
}

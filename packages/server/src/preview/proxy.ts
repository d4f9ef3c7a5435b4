/**
 * The preview proxy's data path: one HTTP request (or one WebSocket) from a client to a port of
 * a VM, over a `tcp.connect` tunnel through the VM's agent (the host never dials the VM's
 * network). Every tunnel is opened through the guest gateway, so ownership, the activity hold and
 * the wake of a suspended VM are the same as for any API call, and is released with the client's
 * request. Bodies move by pipe() both ways (kernel and stream backpressure, nothing buffered
 * beyond the streams' high-water marks); Node's HTTP parser reads the VM's response headers,
 * which bounds them (16 KiB).
 * @module
 */
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type net from "node:net";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { ApiError } from "../errors.js";
import type { GuestGateway } from "../guest/gateway.js";
import type { Account } from "../keys.js";
import { requestHeadersForVm, responseHeadersForClient, withoutQueryParams } from "./forward-headers.js";
import { PAGES, sendPage, sendPageOnSocket, type ProxyPage } from "./pages.js";

/** Named bounds of the proxy. */
export interface ProxyLimits {
  /** After a wake, a refused connect is retried for this long (the VM's server is still starting). */
  portWaitAfterWakeMs: number;
  /** Pause between those retries. */
  portRetryEveryMs: number;
  /** The VM's server must send its response headers within this long of the request's end. */
  responseHeadersMs: number;
  /** A proxied connection with no bytes either way for this long is closed. */
  idleSocketMs: number;
  /** Proxied requests and WebSockets open at once per account (each holds a tunnel). */
  maxConnectionsPerAccount: number;
}

export const DEFAULT_PROXY_LIMITS: ProxyLimits = {
  portWaitAfterWakeMs: 10_000,
  portRetryEveryMs: 200,
  responseHeadersMs: 60_000,
  idleSocketMs: 5 * 60_000,
  maxConnectionsPerAccount: 256,
};

/** Where a proxied request goes, once access was granted: the VM's owner is the account the gateway checks. */
export interface ProxyTarget {
  owner: Account;
  vmId: string;
  port: number;
}

/** Capsule's own cookies and query parameters, which the VM never sees. */
export interface OwnCredentials {
  cookies: readonly string[];
  queryParams: readonly string[];
}

const REFUSED = Symbol("refused");

/**
 * A response head for a raw socket (an upgrade's answer), with Node's own reason phrase; undefined
 * when the status or a header is one Node's writer would refuse (control bytes from the VM).
 */
function rawHead(status: number, headers: ReadonlyArray<readonly [string, string]>): string | undefined {
  if (!Number.isInteger(status) || status < 100 || status > 999) return undefined;
  try {
    for (const [name, value] of headers) {
      http.validateHeaderName(name);
      http.validateHeaderValue(name, value);
    }
  } catch {
    return undefined;
  }
  return `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? "Unknown"}\r\n${headers.map(([k, v]) => `${k}: ${v}\r\n`).join("")}\r\n`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function isRefused(err: unknown): boolean {
  return (err as { agentCode?: string } | undefined)?.agentCode === "CONNECTION_REFUSED";
}

export class PreviewProxy {
  readonly #open = new Map<string, number>();
  /** Every tunnel in use: upgraded WebSockets are not the HTTP server's to close. */
  readonly #tunnels = new Set<net.Socket>();

  constructor(
    private readonly gateway: GuestGateway,
    private readonly log: Logger,
    private readonly own: OwnCredentials,
    readonly limits: ProxyLimits = DEFAULT_PROXY_LIMITS,
  ) {}

  /** Proxied connections open now (all accounts). */
  get openConnections(): number {
    let n = 0;
    for (const v of this.#open.values()) n += v;
    return n;
  }

  /** Ends every proxied connection (the server is closing). */
  close(): void {
    for (const sock of this.#tunnels) sock.destroy();
  }

  async request(req: IncomingMessage, res: ServerResponse, target: ProxyTarget): Promise<void> {
    // Heard before the tunnel is awaited: a client that hangs up while it opens (a wake takes
    // seconds) must not keep the account's slot and the VM's hold.
    const gone = new AbortController();
    res.once("close", () => gone.abort());
    const tunnel = await this.#tunnel(target, gone.signal);
    if (!("sock" in tunnel)) return gone.signal.aborted ? undefined : sendPage(res, tunnel);
    const { sock, release } = tunnel;
    const end = () => {
      sock.destroy();
      release();
    };
    if (gone.signal.aborted || res.destroyed) return end();
    gone.signal.addEventListener("abort", end, { once: true });
    const upstream = http.request({
      method: req.method,
      path: withoutQueryParams(req.url ?? "/", this.own.queryParams),
      headers: requestHeadersForVm(req.headers, this.#context(req, false)),
      createConnection: () => sock,
    });
    // The tunnel comes paused; the client's parser is attached by now.
    upstream.once("socket", (s: net.Socket) => s.resume());
    const headersTimer = setTimeout(() => {
      upstream.destroy();
      sendPage(res, PAGES.timeout());
    }, this.limits.responseHeadersMs);
    gone.signal.addEventListener("abort", () => clearTimeout(headersTimer), { once: true });
    upstream.once("response", (vres: IncomingMessage) => {
      clearTimeout(headersTimer);
      // Never the VM's reason phrase; and a status or header Node refuses to write (Node's parser
      // accepts control bytes its writer rejects) is the VM's broken answer, not the host's crash.
      try {
        res.writeHead(vres.statusCode ?? 502, responseHeadersForClient(vres.rawHeaders, this.own.cookies).flat());
      } catch (err) {
        this.log.debug({ err, vmId: target.vmId, port: target.port }, "the VM's response headers cannot be written");
        vres.destroy();
        return sendPage(res, PAGES.badGateway());
      }
      // Server-sent events and other streams: the headers go now, every chunk as it comes.
      res.flushHeaders();
      vres.pipe(res);
      vres.once("error", () => res.destroy());
      vres.once("aborted", () => res.destroy());
    });
    upstream.once("error", (err) => {
      clearTimeout(headersTimer);
      this.log.debug({ err, vmId: target.vmId, port: target.port }, "proxied request failed");
      sendPage(res, PAGES.badGateway());
    });
    req.pipe(upstream);
  }

  async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, target: ProxyTarget): Promise<void> {
    // As for a request: the client's hang-up is heard while the tunnel opens.
    const gone = new AbortController();
    const hangUp = () => gone.abort();
    socket.once("close", hangUp);
    socket.on("error", hangUp);
    const tunnel = await this.#tunnel(target, gone.signal);
    if (!("sock" in tunnel)) return gone.signal.aborted ? undefined : sendPageOnSocket(socket, tunnel);
    const { sock, release } = tunnel;
    const done = () => {
      sock.destroy();
      socket.destroy();
      release();
    };
    if (gone.signal.aborted || socket.destroyed) return done();
    gone.signal.addEventListener("abort", done, { once: true });
    const upstream = http.request({
      method: req.method,
      path: withoutQueryParams(req.url ?? "/", this.own.queryParams),
      headers: requestHeadersForVm(req.headers, this.#context(req, true)),
      createConnection: () => sock,
    });
    upstream.once("socket", (s: net.Socket) => s.resume());
    const headersTimer = setTimeout(() => {
      upstream.destroy();
      sendPageOnSocket(socket, PAGES.timeout());
    }, this.limits.responseHeadersMs);
    gone.signal.addEventListener("abort", () => clearTimeout(headersTimer), { once: true });
    upstream.once("upgrade", (vres: IncomingMessage, vsock: net.Socket, vhead: Buffer) => {
      clearTimeout(headersTimer);
      // The VM's 101 goes to the client with its headers (Connection/Upgrade included), less
      // Capsule's cookies; not its reason phrase, nor a header Node would refuse to write.
      const pairs: Array<[string, string]> = [];
      const raw = vres.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) {
        const [name, value] = [raw[i] as string, raw[i + 1] as string];
        if (name.toLowerCase() === "set-cookie" && this.own.cookies.some((c) => value.trimStart().startsWith(`${c}=`))) continue;
        pairs.push([name, value]);
      }
      const head101 = rawHead(101, pairs);
      if (head101 === undefined) {
        vsock.destroy();
        return sendPageOnSocket(socket, PAGES.badGateway());
      }
      socket.write(head101);
      if (vhead.length > 0) socket.write(vhead);
      if (head.length > 0) vsock.write(head);
      vsock.on("error", hangUp);
      vsock.once("close", hangUp);
      vsock.pipe(socket);
      socket.pipe(vsock);
    });
    upstream.once("response", (vres: IncomingMessage) => {
      // Not upgraded (a 400 or 404 from the VM's server): its answer, then the connection ends.
      clearTimeout(headersTimer);
      // Its body (decoded) ends with the connection, which is valid for a response without a length.
      const head = rawHead(vres.statusCode ?? 502, [...responseHeadersForClient(vres.rawHeaders, this.own.cookies), ["connection", "close"]]);
      if (head === undefined) {
        vres.destroy();
        return sendPageOnSocket(socket, PAGES.badGateway());
      }
      socket.write(head);
      vres.pipe(socket);
    });
    upstream.once("error", (err) => {
      clearTimeout(headersTimer);
      this.log.debug({ err, vmId: target.vmId, port: target.port }, "proxied upgrade failed");
      sendPageOnSocket(socket, PAGES.badGateway());
    });
    upstream.end();
  }

  #context(req: IncomingMessage, upgrade: boolean) {
    const proto = (req.socket as { encrypted?: boolean }).encrypted ? "https" : "http";
    return { remoteAddress: req.socket.remoteAddress, proto, ownCookies: this.own.cookies, upgrade };
  }

  /**
   * A tunnel to the target's port, through the gateway; or the page that says why not. The
   * returned release frees the account's connection slot and the VM's activity hold (idempotent).
   * `gone` (the client hung up) ends the wait for a woken VM's port; the caller releases what it gets.
   */
  async #tunnel(target: ProxyTarget, gone: AbortSignal): Promise<{ sock: net.Socket; release: () => void } | ProxyPage> {
    const owner = target.owner.id;
    const open = this.#open.get(owner) ?? 0;
    if (open >= this.limits.maxConnectionsPerAccount) return PAGES.tooMany();
    this.#open.set(owner, open + 1);
    let slotFreed = false;
    const freeSlot = () => {
      if (slotFreed) return;
      slotFreed = true;
      const n = (this.#open.get(owner) ?? 1) - 1;
      if (n <= 0) this.#open.delete(owner);
      else this.#open.set(owner, n);
    };
    try {
      const handle = await this.gateway.open(target.owner, target.vmId, {}, async (vm, guest) => {
        // A VM this request woke is still starting its servers: wait a little for the port.
        const deadline = vm.row.desired === "suspended" ? Date.now() + this.limits.portWaitAfterWakeMs : 0;
        for (;;) {
          try {
            return await guest.connectTcp(target.port);
          } catch (err) {
            if (!isRefused(err)) throw err;
            if (Date.now() >= deadline || gone.aborted) return REFUSED;
            await sleep(this.limits.portRetryEveryMs);
          }
        }
      });
      if (handle.value === REFUSED) {
        handle.release();
        freeSlot();
        return PAGES.nothingListens(target.port);
      }
      const sock = handle.value;
      this.#tunnels.add(sock);
      sock.once("close", () => this.#tunnels.delete(sock));
      sock.setTimeout(this.limits.idleSocketMs, () => sock.destroy());
      sock.on("error", () => undefined); // its user sees the close
      return {
        sock,
        release: () => {
          handle.release();
          freeSlot();
        },
      };
    } catch (err) {
      freeSlot();
      const code = err instanceof ApiError ? err.code : undefined;
      if (code === "VM_NOT_FOUND") return PAGES.private();
      if (code === "VM_NOT_RUNNING") return PAGES.vmStopped();
      this.log.info({ err, vmId: target.vmId, port: target.port }, "preview: the VM cannot be reached");
      return PAGES.unavailable();
    }
  }
}

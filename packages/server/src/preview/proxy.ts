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
import type { Grant } from "./access.js";
import { requestHeadersForVm, responseHeadersForClient, setsOwnCookie, withoutQueryParams } from "./forward-headers.js";
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
  /**
   * Of those, the ones opened without the owner's key (a share, a public port, a domain) per
   * client address, so one anonymous client cannot take the account's whole allowance. Behind a
   * reverse proxy every client has the proxy's address: raise it there.
   */
  maxAnonymousConnectionsPerClient: number;
  /** How often live connections re-check what let them in (a key revoked by another process, a share that expired). */
  grantCheckMs: number;
}

export const DEFAULT_PROXY_LIMITS: ProxyLimits = {
  portWaitAfterWakeMs: 10_000,
  portRetryEveryMs: 200,
  responseHeadersMs: 60_000,
  idleSocketMs: 5 * 60_000,
  maxConnectionsPerAccount: 256,
  maxAnonymousConnectionsPerClient: 64,
  grantCheckMs: 5_000,
};

/** Where a proxied request goes, once access was granted: the VM's owner is the account the gateway checks. */
export interface ProxyTarget {
  owner: Account;
  vmId: string;
  port: number;
  /** What let the client in; the connection closes once it no longer does. */
  grant: Grant;
}

/** Re-checks grants for live connections (preview/access.ts). */
export interface GrantCheck {
  stillGranted(grant: Grant, vmId: string, port: number): boolean;
  /** `f` runs after a grant was withdrawn in this process, so its connections close at once. */
  onWithdrawn(f: () => void): void;
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

/** Open connections counted by a key (an account, a client address), each under a cap. */
class Slots {
  readonly #n = new Map<string, number>();

  get total(): number {
    let n = 0;
    for (const v of this.#n.values()) n += v;
    return n;
  }

  /** Takes one of `key`'s slots; false when it has `max` already. */
  take(key: string, max: number): boolean {
    const n = this.#n.get(key) ?? 0;
    if (n >= max) return false;
    this.#n.set(key, n + 1);
    return true;
  }

  free(key: string): void {
    const n = (this.#n.get(key) ?? 1) - 1;
    if (n <= 0) this.#n.delete(key);
    else this.#n.set(key, n);
  }
}

export class PreviewProxy {
  readonly #perAccount = new Slots();
  readonly #perClient = new Slots();
  /** Every tunnel in use, with what let it open: upgraded WebSockets are not the HTTP server's to close. */
  readonly #tunnels = new Map<net.Socket, ProxyTarget>();
  #grantTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly gateway: GuestGateway,
    private readonly log: Logger,
    private readonly own: OwnCredentials,
    private readonly grants: GrantCheck,
    readonly limits: ProxyLimits = DEFAULT_PROXY_LIMITS,
  ) {
    grants.onWithdrawn(() => this.checkGrants());
  }

  /** Proxied connections open now (all accounts). */
  get openConnections(): number {
    return this.#perAccount.total;
  }

  /** Ends every proxied connection (the server is closing). */
  close(): void {
    for (const sock of this.#tunnels.keys()) sock.destroy();
    this.#stopGrantChecks();
  }

  /** Ends the connections whose grant was withdrawn (a key revoked, a share revoked or expired, a port made private). */
  checkGrants(): void {
    const seen = new Map<string, boolean>();
    for (const [sock, t] of this.#tunnels) {
      const key = JSON.stringify([t.grant, t.vmId, t.port]);
      let ok = seen.get(key);
      if (ok === undefined) seen.set(key, (ok = this.grants.stillGranted(t.grant, t.vmId, t.port)));
      if (!ok) sock.destroy();
    }
  }

  #stopGrantChecks(): void {
    clearInterval(this.#grantTimer);
    this.#grantTimer = undefined;
  }

  async request(req: IncomingMessage, res: ServerResponse, target: ProxyTarget): Promise<void> {
    // Heard before the tunnel is awaited: a client that hangs up while it opens (a wake takes
    // seconds) must not keep the account's slot and the VM's hold.
    const gone = new AbortController();
    res.once("close", () => gone.abort());
    const tunnel = await this.#tunnel(target, req.socket.remoteAddress, gone.signal);
    if (!("sock" in tunnel)) return gone.signal.aborted ? undefined : sendPage(res, tunnel);
    const { sock, release } = tunnel;
    const end = () => {
      sock.destroy();
      release();
    };
    if (gone.signal.aborted || res.destroyed) return end();
    gone.signal.addEventListener("abort", end, { once: true });
    const upstream = this.#upstream(req, sock, false, gone.signal, () => sendPage(res, PAGES.timeout()));
    upstream.once("response", (vres: IncomingMessage) => {
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
      this.log.debug({ err, vmId: target.vmId, port: target.port }, "proxied request failed");
      sendPage(res, PAGES.badGateway());
    });
    req.pipe(upstream);
  }

  /**
   * The client's request, sent to the VM over its tunnel (which comes paused: resumed once the
   * request's parser is attached). The VM's response headers (or its 101) must come within
   * `responseHeadersMs`, else the request is destroyed and `onTimeout` answers the client.
   */
  #upstream(req: IncomingMessage, sock: net.Socket, upgrade: boolean, gone: AbortSignal, onTimeout: () => void): http.ClientRequest {
    const upstream = http.request({
      method: req.method,
      path: withoutQueryParams(req.url ?? "/", this.own.queryParams),
      headers: requestHeadersForVm(req.headers, this.#context(req, upgrade)),
      createConnection: () => sock,
    });
    upstream.once("socket", (s: net.Socket) => s.resume());
    const timer = setTimeout(() => {
      upstream.destroy();
      onTimeout();
    }, this.limits.responseHeadersMs);
    const answered = () => clearTimeout(timer);
    gone.addEventListener("abort", answered, { once: true });
    upstream.once("response", answered).once("upgrade", answered).once("error", answered);
    return upstream;
  }

  async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, target: ProxyTarget): Promise<void> {
    // As for a request: the client's hang-up is heard while the tunnel opens.
    const gone = new AbortController();
    const hangUp = () => gone.abort();
    socket.once("close", hangUp);
    socket.on("error", hangUp);
    const tunnel = await this.#tunnel(target, req.socket.remoteAddress, gone.signal);
    if (!("sock" in tunnel)) return gone.signal.aborted ? undefined : sendPageOnSocket(socket, tunnel);
    const { sock, release } = tunnel;
    const done = () => {
      sock.destroy();
      socket.destroy();
      release();
    };
    if (gone.signal.aborted || socket.destroyed) return done();
    gone.signal.addEventListener("abort", done, { once: true });
    const upstream = this.#upstream(req, sock, true, gone.signal, () => sendPageOnSocket(socket, PAGES.timeout()));
    upstream.once("upgrade", (vres: IncomingMessage, vsock: net.Socket, vhead: Buffer) => {
      // The VM's 101 goes to the client with its headers (Connection/Upgrade included), less
      // Capsule's cookies; not its reason phrase, nor a header Node would refuse to write.
      const pairs: Array<[string, string]> = [];
      const raw = vres.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) {
        const [name, value] = [raw[i] as string, raw[i + 1] as string];
        if (name.toLowerCase() === "set-cookie" && setsOwnCookie(value, this.own.cookies)) continue;
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
  async #tunnel(target: ProxyTarget, client: string | undefined, gone: AbortSignal): Promise<{ sock: net.Socket; release: () => void } | ProxyPage> {
    const owner = target.owner.id;
    const anonymous = target.grant.kind !== "key";
    const from = client ?? "";
    if (!this.#perAccount.take(owner, this.limits.maxConnectionsPerAccount)) return PAGES.tooMany();
    if (anonymous && !this.#perClient.take(from, this.limits.maxAnonymousConnectionsPerClient)) {
      this.#perAccount.free(owner);
      return PAGES.tooManyFromClient();
    }
    let slotFreed = false;
    const freeSlot = () => {
      if (slotFreed) return;
      slotFreed = true;
      this.#perAccount.free(owner);
      if (anonymous) this.#perClient.free(from);
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
      this.#tunnels.set(sock, target);
      this.#grantTimer ??= setInterval(() => {
        try {
          this.checkGrants();
        } catch {
          // the database closed under a server shutting down: its tunnels are going anyway
        }
      }, this.limits.grantCheckMs).unref();
      sock.once("close", () => {
        this.#tunnels.delete(sock);
        if (this.#tunnels.size === 0) this.#stopGrantChecks();
      });
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

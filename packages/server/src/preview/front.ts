/**
 * The front of the server's HTTP listener: requests and upgrades whose Host is a preview host
 * (`<port>-<vmid>.<previewDomain>`) go to the preview proxy, after access is granted; everything
 * else goes to the API unchanged. A host name an account claimed as a domain goes to its VM
 * port too, publicly (Freestyle's domains are public). Access to a preview is private: the VM
 * owner's API key. Any refusal (no credentials, another account's key, a VM that does not exist)
 * is the same page, so a preview host reveals nothing about other accounts' VMs. Who else may
 * open one is access.ts's: a share link's cookie, or a port made public.
 * @module
 */
import type { IncomingMessage, RequestListener, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { bearer } from "../app.js";
import { readCookie, SESSION_COOKIE } from "../console/auth.js";
import { keyIdOf, type KeyStore } from "../keys.js";
import type { DomainRows } from "../vms/domains.js";
import { HANDOFF_PARAM, PREVIEW_COOKIE, SHARE_PARAM, type PreviewAccess } from "./access.js";
import { hostnameOf, type HostRouter } from "./host.js";
import { withoutQueryParams } from "./forward-headers.js";
import { PAGES, sendPage, sendPageOnSocket, type ProxyPage } from "./pages.js";
import type { OwnCredentials, PreviewProxy, ProxyTarget } from "./proxy.js";

/** Capsule's credentials a request may carry, which the VM never sees. */
export const OWN_CREDENTIALS: OwnCredentials = { cookies: [SESSION_COOKIE, PREVIEW_COOKIE], queryParams: [SHARE_PARAM, HANDOFF_PARAM] };

type Resolved = ProxyTarget | { page: ProxyPage } | { redirect: string; cookie: string };

export type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

export class PreviewFront {
  readonly router: HostRouter;

  constructor(
    private readonly access: PreviewAccess,
    private readonly proxy: PreviewProxy,
    private readonly keys: KeyStore,
    private readonly domains: DomainRows,
  ) {
    this.router = access.router;
  }

  /** The server's request listener: previews here, the rest to `api`. */
  requests(api: RequestListener): RequestListener {
    return (req, res) => {
      const target = this.#resolve(req);
      if (!target) return api(req, res);
      void this.#serve(req, res, target);
    };
  }

  /** The server's upgrade listener: previews here, the rest to `api`. */
  upgrades(api: UpgradeListener): UpgradeListener {
    return (req, socket, head) => {
      const target = this.#resolve(req);
      if (!target) return api(req, socket, head);
      socket.on("error", () => socket.destroy());
      if ("page" in target) return sendPageOnSocket(socket, target.page);
      if ("redirect" in target) return sendPageOnSocket(socket, PAGES.private()); // a share link is for a page, not a socket
      this.proxy.upgrade(req, socket, head, target).catch(() => socket.destroy());
    };
  }

  async #serve(req: IncomingMessage, res: ServerResponse, target: Resolved): Promise<void> {
    if ("page" in target) return sendPage(res, target.page);
    if ("redirect" in target) {
      res.writeHead(302, { location: target.redirect, "set-cookie": target.cookie, "cache-control": "no-store", "content-length": "0" });
      return void res.end();
    }
    await this.proxy.request(req, res, target).catch(() => res.destroy());
  }

  /** undefined: the API's request. Otherwise where it goes, the page that refuses it, or a share link's redirect. */
  #resolve(req: IncomingMessage): Resolved | undefined {
    const route = this.router.route(req.headers.host);
    if (!route) return undefined;
    if (route.kind === "other") {
      const domain = this.domains.route(route.hostname);
      return domain && { ...domain, grant: { kind: "domain" } };
    }
    const { vmId, port } = route;
    // One page for every refusal, whoever asks and whether the VM exists.
    const refused = { page: PAGES.private(this.#consoleLink(req)) };
    const owner = this.access.owner(vmId);
    if (!owner) return refused;
    const key = bearer(req.headers.authorization);
    // A key is the whole answer: the owner's opens the preview, any other is refused (the gateway checks again).
    if (key) {
      const keyId = keyIdOf(key);
      return keyId !== undefined && this.keys.authenticate(key)?.id === owner.id ? { owner, vmId, port, grant: { kind: "key", keyId } } : refused;
    }
    if (this.access.rows.isPublic(vmId, port)) return { owner, vmId, port, grant: { kind: "public" } };
    const query = new URLSearchParams((req.url ?? "").split("?")[1] ?? "");
    const handoff = query.get(HANDOFF_PARAM);
    if (handoff !== null) {
      const minted = this.access.takeHandoff(handoff, vmId, port);
      if (!minted) return refused;
      return { redirect: withoutQueryParams(req.url ?? "/", [HANDOFF_PARAM]), cookie: this.access.cookie(minted.token, minted.expiresAt, req) };
    }
    const shared = query.get(SHARE_PARAM) ?? undefined;
    if (shared !== undefined) {
      const share = this.access.validShare(shared, vmId, port);
      if (share === undefined) return refused;
      // The token leaves the address bar (and the history, and any Referer) at once.
      return { redirect: withoutQueryParams(req.url ?? "/", [SHARE_PARAM]), cookie: this.access.cookie(shared, share.expiresAt, req) };
    }
    const cookie = readCookie(req.headers.cookie, PREVIEW_COOKIE);
    const share = cookie === undefined ? undefined : this.access.validShare(cookie, vmId, port);
    if (share !== undefined) return { owner, vmId, port, grant: { kind: "share", shareId: share.id } };
    return refused;
  }

  /**
   * The console's way into this preview host, where the console's host is known: with the default
   * preview domain `localhost`, the console is at localhost on the same port.
   */
  #consoleLink(req: IncomingMessage): string | undefined {
    if (this.router.previewDomain !== "localhost") return undefined;
    const serverPort = /:([0-9]{1,5})$/.exec(req.headers.host ?? "")?.[1];
    const proto = (req.socket as { encrypted?: boolean }).encrypted ? "https" : "http";
    const here = `${proto}://${hostnameOf(req.headers.host) ?? ""}${serverPort ? `:${serverPort}` : ""}${req.url ?? "/"}`;
    return `${proto}://localhost${serverPort ? `:${serverPort}` : ""}/console/preview?to=${encodeURIComponent(here)}`;
  }

}

/**
 * The front of the server's HTTP listener: requests and upgrades whose Host is a preview host
 * (`<port>-<vmid>.<previewDomain>`) go to the preview proxy, after access is granted; everything
 * else goes to the API unchanged. A host name an account claimed as a domain goes to its VM
 * port too, publicly (Freestyle's domains are public). Access to a preview is private: the VM
 * owner's API key. Any refusal (no credentials, another account's key, a VM that does not exist)
 * is the same page, so a preview host reveals nothing about other accounts' VMs.
 * @module
 */
import type { IncomingMessage, RequestListener, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { bearer } from "../app.js";
import { SESSION_COOKIE } from "../console/auth.js";
import type { Account, KeyStore } from "../keys.js";
import type { DomainRows } from "../vms/domains.js";
import { HostRouter } from "./host.js";
import { PAGES, sendPage, sendPageOnSocket, type ProxyPage } from "./pages.js";
import type { OwnCredentials, PreviewProxy, ProxyTarget } from "./proxy.js";

/** The auth cookie of a preview host (host-only: each preview host has its own). */
export const PREVIEW_COOKIE = "capsule_preview";
/** The query parameter carrying a share token. */
export const SHARE_PARAM = "capsule_share";

/** Capsule's credentials a request may carry, which the VM never sees. */
export const OWN_CREDENTIALS: OwnCredentials = { cookies: [SESSION_COOKIE, PREVIEW_COOKIE], queryParams: [SHARE_PARAM] };

export type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

export class PreviewFront {
  readonly router: HostRouter;

  constructor(
    previewDomain: string,
    private readonly proxy: PreviewProxy,
    private readonly keys: KeyStore,
    private readonly domains: DomainRows,
  ) {
    this.router = new HostRouter(previewDomain);
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
      this.proxy.upgrade(req, socket, head, target).catch(() => socket.destroy());
    };
  }

  async #serve(req: IncomingMessage, res: ServerResponse, target: ProxyTarget | { page: ProxyPage }): Promise<void> {
    if ("page" in target) return sendPage(res, target.page);
    await this.proxy.request(req, res, target).catch(() => res.destroy());
  }

  /** undefined: the API's request. Otherwise where it goes, or the page that refuses it. */
  #resolve(req: IncomingMessage): ProxyTarget | { page: ProxyPage } | undefined {
    const route = this.router.route(req.headers.host);
    if (!route) return undefined;
    if (route.kind === "other") return this.domains.route(route.hostname);
    const account = this.#account(req);
    if (!account) return { page: PAGES.private() };
    return { owner: account, vmId: route.vmId, port: route.port };
  }

  #account(req: IncomingMessage): Account | undefined {
    const key = bearer(req.headers.authorization);
    return key ? this.keys.authenticate(key) : undefined;
  }
}

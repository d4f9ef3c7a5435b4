/**
 * Who may open a preview host. Private by default: the VM owner's API key (curl, the SDK), or a
 * browser holding the host's auth cookie, minted from a share link; or anyone, for a port its
 * owner made public. The cookie is host-only (no Domain attribute), HttpOnly and SameSite=Lax, so
 * each preview host is its own origin with its own cookie, and it carries the share's token:
 * expiry and revocation are checked on every request.
 * @module
 */
import type { IncomingMessage } from "node:http";
import type { Account } from "../keys.js";
import type { PreviewRows } from "../vms/preview-rows.js";
import type { HostRouter } from "./host.js";
import type { ShareSigner } from "./share-token.js";

/** The auth cookie of a preview host (host-only: each preview host has its own). */
export const PREVIEW_COOKIE = "capsule_preview";
/** The query parameter carrying a share token. */
export const SHARE_PARAM = "capsule_share";
export interface MintedShare {
  id: string;
  vmId: string;
  port: number;
  url: string;
  expiresAt: string;
}

export class PreviewAccess {
  constructor(
    readonly router: HostRouter,
    readonly rows: PreviewRows,
    private readonly signer: ShareSigner,
    private readonly now: () => number = Date.now,
  ) {}

  /** A share link for a VM port (the caller checked ownership). `origin`: how the client reached the API. */
  share(accountId: string, vmId: string, port: number, ttlSeconds: number, origin: URL): MintedShare {
    const row = this.rows.createShare(accountId, vmId, port, this.now() + ttlSeconds * 1000);
    const token = this.signer.sign(row);
    return { id: row.id, vmId, port, url: `${this.router.previewUrl(origin, vmId, port)}?${SHARE_PARAM}=${token}`, expiresAt: new Date(row.expiresAt).toISOString() };
  }

  /** A genuine, unexpired, unrevoked share token for this VM port: its expiry; else undefined. */
  validShare(token: string | undefined, vmId: string, port: number): number | undefined {
    const now = this.now();
    const claim = this.signer.verify(token, vmId, port, now);
    return claim && this.rows.shareLive(claim.id, vmId, port, now) ? claim.expiresAt : undefined;
  }

  /** The Set-Cookie that lets a browser in until `expiresAt`. */
  cookie(token: string, expiresAt: number, req: IncomingMessage): string {
    const maxAge = Math.max(0, Math.floor((expiresAt - this.now()) / 1000));
    const secure = (req.socket as { encrypted?: boolean }).encrypted || req.headers["x-forwarded-proto"] === "https";
    return `${PREVIEW_COOKIE}=${token}; Path=/; Max-Age=${maxAge}; HttpOnly; SameSite=Lax${secure ? "; Secure" : ""}`;
  }

  owner(vmId: string): Account | undefined {
    return this.rows.owner(vmId);
  }
}

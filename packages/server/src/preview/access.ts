/**
 * Who may open a preview host. Private by default: the VM owner's API key (curl, the SDK), or a
 * browser holding the host's auth cookie, minted from a share link or handed over by the console
 * (whose own cookie never leaves the API host: the console mints a one-time token for the
 * preview host instead); or anyone, for a port its owner made public. The cookie is host-only (no Domain attribute), HttpOnly and SameSite=Lax, so
 * each preview host is its own origin with its own cookie, and it carries the share's token:
 * expiry and revocation are checked on every request.
 * @module
 */
import crypto from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Account, KeyStore } from "../keys.js";
import type { PreviewRows } from "../vms/preview-rows.js";
import type { HostRouter } from "./host.js";
import type { ShareSigner } from "./share-token.js";

/** The auth cookie of a preview host (host-only: each preview host has its own). */
export const PREVIEW_COOKIE = "capsule_preview";
/** The query parameter carrying a share token. */
export const SHARE_PARAM = "capsule_share";
/** The query parameter carrying a console handoff (one use, {@link HANDOFF_TTL_MS}). */
export const HANDOFF_PARAM = "capsule_handoff";
/** How long the console's handoff to a preview host may take (a redirect, so seconds). */
export const HANDOFF_TTL_MS = 60_000;
/** How long a preview host stays open to a console user after the handoff (the console session's own length). */
export const CONSOLE_PREVIEW_TTL_MS = 12 * 3600 * 1000;

/**
 * What let a client through to a preview, re-checked while its connection lives: the owner's API
 * key, a share (a link's or the console's handoff), a port made public, or a claimed domain.
 */
export type Grant = { kind: "key"; keyId: string } | { kind: "share"; shareId: string } | { kind: "public" } | { kind: "domain" };

interface Handoff {
  accountId: string;
  vmId: string;
  port: number;
  expiresAt: number;
}
const sha256 = (s: string) => crypto.createHash("sha256").update(s).digest("hex");

export interface MintedShare {
  id: string;
  vmId: string;
  port: number;
  url: string;
  expiresAt: string;
}

export class PreviewAccess {
  /** One-time console handoffs, by sha256 of the token. */
  readonly #handoffs = new Map<string, Handoff>();
  /** Told when a grant is withdrawn here (a share revoked, a port made private): live connections are re-checked at once. */
  readonly #withdrawn = new Set<() => void>();

  constructor(
    readonly router: HostRouter,
    readonly rows: PreviewRows,
    private readonly signer: ShareSigner,
    private readonly keys: KeyStore,
    private readonly now: () => number = Date.now,
  ) {}

  /** Revokes one of the VM's shares (false: no such live share); its open connections close. */
  revokeShare(vmId: string, id: string): boolean {
    const revoked = this.rows.revokeShare(vmId, id);
    if (revoked) this.#notifyWithdrawn();
    return revoked;
  }

  /** Opens a VM port to anyone, or makes it private again (its anonymous connections close). */
  setPublic(vmId: string, port: number, on: boolean): void {
    this.rows.setPublic(vmId, port, on);
    if (!on) this.#notifyWithdrawn();
  }

  /**
   * Whether a grant still lets its holder in: the key active, the share unrevoked and unexpired,
   * the port still public. Read from the database each time, so a key revoked by another process
   * (`capsule keys revoke`) counts too. A domain is public while its VM exists.
   */
  stillGranted(grant: Grant, vmId: string, port: number): boolean {
    switch (grant.kind) {
      case "key":
        return this.keys.activeKeyIds([grant.keyId]).has(grant.keyId);
      case "share":
        return this.rows.shareLive(grant.shareId, vmId, port, this.now());
      case "public":
        return this.rows.isPublic(vmId, port);
      case "domain":
        return true;
    }
  }

  /** Calls `f` after every withdrawal made through this object. */
  onWithdrawn(f: () => void): void {
    this.#withdrawn.add(f);
  }

  #notifyWithdrawn(): void {
    for (const f of this.#withdrawn) f();
  }

  /** A share link for a VM port (the caller checked ownership). `origin`: how the client reached the API. */
  share(accountId: string, vmId: string, port: number, ttlSeconds: number, origin: URL): MintedShare {
    const row = this.rows.createShare(accountId, vmId, port, this.now() + ttlSeconds * 1000, this.now());
    const token = this.signer.sign(row);
    return { id: row.id, vmId, port, url: `${this.router.previewUrl(origin, vmId, port)}?${SHARE_PARAM}=${token}`, expiresAt: new Date(row.expiresAt).toISOString() };
  }

  /** A genuine, unexpired, unrevoked share token for this VM port: its share id and expiry; else undefined. */
  validShare(token: string | undefined, vmId: string, port: number): { id: string; expiresAt: number } | undefined {
    const now = this.now();
    const claim = this.signer.verify(token, vmId, port, now);
    return claim && this.rows.shareLive(claim.id, vmId, port, now) ? claim : undefined;
  }

  /** The Set-Cookie that lets a browser in until `expiresAt`. */
  cookie(token: string, expiresAt: number, req: IncomingMessage): string {
    const maxAge = Math.max(0, Math.floor((expiresAt - this.now()) / 1000));
    const secure = (req.socket as { encrypted?: boolean }).encrypted || req.headers["x-forwarded-proto"] === "https";
    return `${PREVIEW_COOKIE}=${token}; Path=/; Max-Age=${maxAge}; HttpOnly; SameSite=Lax${secure ? "; Secure" : ""}`;
  }

  /** A one-time token that opens the VM port's preview host for the account's console user (ownership checked by the caller). */
  handoff(accountId: string, vmId: string, port: number): string {
    const now = this.now();
    for (const [h, t] of this.#handoffs) if (t.expiresAt <= now) this.#handoffs.delete(h);
    const token = crypto.randomBytes(32).toString("base64url");
    this.#handoffs.set(sha256(token), { accountId, vmId, port, expiresAt: now + HANDOFF_TTL_MS });
    return token;
  }

  /**
   * Spends a handoff token on its own preview host: a share for the console user (revocable like
   * any other), whose token becomes the host's cookie. Undefined for an unknown, spent, expired or
   * foreign token.
   */
  takeHandoff(token: string, vmId: string, port: number): { token: string; expiresAt: number } | undefined {
    const h = sha256(token);
    const t = this.#handoffs.get(h);
    this.#handoffs.delete(h);
    if (!t || t.expiresAt <= this.now() || t.vmId !== vmId || t.port !== port) return undefined;
    let row;
    try {
      row = this.rows.createShare(t.accountId, vmId, port, this.now() + CONSOLE_PREVIEW_TTL_MS, this.now());
    } catch {
      return undefined; // the account is at its share cap: the private page, like any refusal
    }
    return { token: this.signer.sign(row), expiresAt: row.expiresAt };
  }

  owner(vmId: string): Account | undefined {
    return this.rows.owner(vmId);
  }
}

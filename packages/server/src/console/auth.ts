/**
 * Web console authentication. Signing in with an API key creates a console session: a random id
 * (32 bytes) held by the browser in an HttpOnly, SameSite=Strict cookie and mapped here to the
 * account and the key it was made with. The key itself never reaches the browser's storage or a
 * URL. Every use re-checks the key in the database, so revoking a key (also from another process,
 * `capsule keys revoke`) ends the console sessions made with it at once.
 *
 * Cookie-authenticated requests must carry `X-Capsule-Console: 1`, a header a cross-site form or
 * image cannot send (CSRF). WebSockets cannot carry headers from a browser, so the console asks
 * for a PTY token: single use, 60 s, bound to the console session, the account, one VM and one
 * Linux user, passed as `?token=`.
 * @module
 */
import crypto from "node:crypto";
import type { Db } from "../db.js";
import type { Account, KeyStore } from "../keys.js";

export const SESSION_COOKIE = "capsule_console";
export const CONSOLE_HEADER = "x-capsule-console";
export const SESSION_TTL_MS = 12 * 3600 * 1000;
export const WS_TOKEN_TTL_MS = 60 * 1000;

interface ConsoleSession {
  account: Account;
  keyId: string;
  expiresAt: number;
}

interface WsToken {
  sessionHash: string;
  accountId: string;
  vmId: string;
  user: string | undefined;
  expiresAt: number;
}

const KEY_ID_RE = /^cap_([a-z0-9]{12})_/;
const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;

function hash(s: string): string {
  return crypto.createHash("sha256").update(s).digest("hex");
}

/**
 * Reads one cookie from a Cookie header; undefined when it is absent or sent more than once. Two
 * cookies of one name mean another host set one for a parent domain (cookie tossing: a page on
 * `3000-x.example.com` can set `Domain=example.com; Path=/console`, which the browser sends
 * first): neither is trusted, so a tossed session can never stand in for the user's.
 */
export function readCookie(header: string | undefined, name: string): string | undefined {
  let found: string | undefined;
  for (const part of (header ?? "").split(";")) {
    const i = part.indexOf("=");
    if (i <= 0 || part.slice(0, i).trim() !== name) continue;
    if (found !== undefined) return undefined;
    found = part.slice(i + 1).trim();
  }
  return found;
}

export class ConsoleAuth {
  /** Keyed by sha256 of the session id, so a heap dump does not hand out live cookies. */
  private readonly sessions = new Map<string, ConsoleSession>();
  private readonly tokens = new Map<string, WsToken>();
  /** Told when a session ends (sign-out, expiry or its key's revocation seen): its open terminals are closed. */
  private readonly endListeners = new Set<(sessionRef: string) => void>();

  constructor(
    private readonly db: Db,
    private readonly keys: KeyStore,
    private readonly now: () => number = Date.now,
  ) {}

  /** Signs in with an API key: answers the new session id, or undefined for a bad or revoked key. */
  signIn(key: string): { sessionId: string; account: Account; expiresAt: number } | undefined {
    const account = this.keys.authenticate(key);
    const keyId = KEY_ID_RE.exec(key)?.[1];
    if (!account || !keyId) return undefined;
    this.sweep();
    const sessionId = crypto.randomBytes(32).toString("base64url");
    const expiresAt = this.now() + SESSION_TTL_MS;
    this.sessions.set(hash(sessionId), { account, keyId, expiresAt });
    return { sessionId, account, expiresAt };
  }

  /** The account of a live session whose key is still active; ends the session otherwise. */
  authenticate(sessionId: string | undefined): Account | undefined {
    if (!sessionId) return undefined;
    const h = hash(sessionId);
    const s = this.sessions.get(h);
    if (!s) return undefined;
    if (s.expiresAt <= this.now() || !this.keyActive(s.keyId)) {
      this.drop(h);
      return undefined;
    }
    return s.account;
  }

  signOut(sessionId: string | undefined): void {
    if (sessionId) this.drop(hash(sessionId));
  }

  /** Issues a single-use PTY token for one VM (already checked to be the account's) and Linux user. */
  issueWsToken(sessionId: string, vmId: string, user: string | undefined): { token: string; expiresAt: number } | undefined {
    const account = this.authenticate(sessionId);
    if (!account) return undefined;
    const token = crypto.randomBytes(32).toString("base64url");
    const expiresAt = this.now() + WS_TOKEN_TTL_MS;
    this.tokens.set(hash(token), { sessionHash: hash(sessionId), accountId: account.id, vmId, user, expiresAt });
    return { token, expiresAt };
  }

  /**
   * Spends a PTY token for a WebSocket on `vmId`. Answers the account and the Linux user bound to
   * it, or undefined when the token is unknown, used, expired, for another VM, or its console
   * session (or that session's key) has ended. `sessionRef` names the console session (not its
   * secret id) for {@link sessionLive} and {@link onSessionEnd}.
   */
  consumeWsToken(token: string | null | undefined, vmId: string | undefined): { account: Account; user: string | undefined; sessionRef: string; keyId: string } | undefined {
    if (!token || !TOKEN_RE.test(token)) return undefined;
    const h = hash(token);
    const t = this.tokens.get(h);
    if (!t) return undefined;
    this.tokens.delete(h);
    if (t.expiresAt <= this.now() || t.vmId !== vmId) return undefined;
    const s = this.sessions.get(t.sessionHash);
    if (!s || s.expiresAt <= this.now() || !this.keyActive(s.keyId)) {
      this.drop(t.sessionHash);
      return undefined;
    }
    if (s.account.id !== t.accountId) return undefined;
    return { account: s.account, user: t.user, sessionRef: t.sessionHash, keyId: s.keyId };
  }

  /** Whether the console session behind a socket still lives (not signed out, not expired, key active). */
  sessionLive(sessionRef: string): boolean {
    const s = this.sessions.get(sessionRef);
    if (s && s.expiresAt > this.now() && this.keyActive(s.keyId)) return true;
    if (s) this.drop(sessionRef);
    return false;
  }

  /** Calls `f` with the ref of every session that ends from now on; answers the unsubscribe. */
  onSessionEnd(f: (sessionRef: string) => void): () => void {
    this.endListeners.add(f);
    return () => this.endListeners.delete(f);
  }

  private keyActive(keyId: string): boolean {
    return this.db.prepare("SELECT 1 FROM api_keys WHERE id = ? AND revoked_at IS NULL").get(keyId) !== undefined;
  }

  private drop(sessionHash: string): void {
    const had = this.sessions.delete(sessionHash);
    for (const [h, t] of this.tokens) if (t.sessionHash === sessionHash) this.tokens.delete(h);
    if (had) for (const f of this.endListeners) f(sessionHash);
  }

  private sweep(): void {
    const now = this.now();
    for (const [h, s] of this.sessions) if (s.expiresAt <= now) this.drop(h);
    for (const [h, t] of this.tokens) if (t.expiresAt <= now) this.tokens.delete(h);
  }
}

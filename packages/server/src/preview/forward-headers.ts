/**
 * What the proxy passes on between a client and a VM's server. Hop-by-hop headers stay on their
 * hop; Capsule's own credentials (its API key, its preview cookie, a share token in the query)
 * never reach the VM, whose code is hostile; X-Forwarded-* say who asked for what.
 * @module
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";

/** RFC 9110 §7.6.1's connection-specific headers, plus the de-facto ones. */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"]);

/** A Capsule API key in an Authorization header (keys.ts: `cap_<id>_<secret>`). */
const CAPSULE_BEARER_RE = /^\s*Bearer\s+cap_[a-z0-9]+_\S*\s*$/i;

export interface ForwardContext {
  /** The client's address (the TCP peer). */
  remoteAddress: string | undefined;
  /** "https" when the server was reached over TLS; else "http". */
  proto: string;
  /** Cookie names that are Capsule's, removed from Cookie and from the VM's Set-Cookie. */
  ownCookies: readonly string[];
  /** Keep `Connection: upgrade` and `Upgrade` (a WebSocket handshake). */
  upgrade: boolean;
}

function connectionTokens(value: string | string[] | undefined): Set<string> {
  const all = Array.isArray(value) ? value.join(",") : (value ?? "");
  return new Set(all.split(",").map((t) => t.trim().toLowerCase()).filter(Boolean));
}

/** Removes named cookies from a Cookie header; undefined when none is left. */
export function withoutCookies(header: string | undefined, names: readonly string[]): string | undefined {
  if (!header) return undefined;
  const kept = header.split(";").filter((part) => {
    const i = part.indexOf("=");
    const name = (i < 0 ? part : part.slice(0, i)).trim();
    return name !== "" && !names.includes(name);
  });
  return kept.length > 0 ? kept.map((p) => p.trim()).join("; ") : undefined;
}

/** The cookie name a Set-Cookie value sets, as a browser reads it (trimmed; none without `=`). */
export function setCookieName(value: string): string | undefined {
  const i = value.split(";", 1)[0]?.indexOf("=") ?? -1;
  return i < 0 ? undefined : value.slice(0, i).trim();
}

/** True for a VM's Set-Cookie that would set (or clear) one of Capsule's cookies. */
export function setsOwnCookie(value: string, ownCookies: readonly string[]): boolean {
  const name = setCookieName(value);
  return name !== undefined && ownCookies.includes(name);
}

/** The request headers the VM gets. */
export function requestHeadersForVm(headers: IncomingHttpHeaders, ctx: ForwardContext): OutgoingHttpHeaders {
  const drop = connectionTokens(headers.connection);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || drop.has(name)) continue;
    if (name === "authorization" && typeof value === "string" && CAPSULE_BEARER_RE.test(value)) continue;
    if (name === "cookie") {
      const cookie = withoutCookies(Array.isArray(value) ? value.join("; ") : value, ctx.ownCookies);
      if (cookie) out.cookie = cookie;
      continue;
    }
    if (name === "x-forwarded-for" || name === "x-forwarded-host" || name === "x-forwarded-proto") continue;
    out[name] = value;
  }
  // The client's chunked body was decoded by Node's parser; it goes on chunked again. Without the
  // header Node's client would write a GET's or HEAD's body unframed, and the VM's server would
  // read it as a second request that never passed through this rewriting.
  if (headers["transfer-encoding"] !== undefined && headers["content-length"] === undefined) out["transfer-encoding"] = "chunked";
  if (ctx.upgrade && headers.upgrade) {
    out.connection = "upgrade";
    out.upgrade = headers.upgrade;
  }
  const prior = headers["x-forwarded-for"];
  const chain = [...(Array.isArray(prior) ? prior : prior ? [prior] : []), ...(ctx.remoteAddress ? [ctx.remoteAddress] : [])];
  if (chain.length > 0) out["x-forwarded-for"] = chain.join(", ");
  if (headers.host) out["x-forwarded-host"] = headers.host;
  out["x-forwarded-proto"] = ctx.proto;
  return out;
}

/** The response headers the client gets from the VM (raw pairs, so repeated headers keep their order). */
export function responseHeadersForClient(rawHeaders: readonly string[], ownCookies: readonly string[]): Array<[string, string]> {
  const drop = new Set<string>();
  for (let i = 0; i < rawHeaders.length; i += 2) if ((rawHeaders[i] as string).toLowerCase() === "connection") for (const t of connectionTokens(rawHeaders[i + 1])) drop.add(t);
  const out: Array<[string, string]> = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    const value = rawHeaders[i + 1] as string;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || drop.has(lower)) continue;
    // A VM must not overwrite (or clear) Capsule's own cookie on its preview host.
    if (lower === "set-cookie" && setsOwnCookie(value, ownCookies)) continue;
    out.push([name, value]);
  }
  return out;
}

/** The request target with the given query parameters removed (a share token never reaches the VM). */
export function withoutQueryParams(url: string, names: readonly string[]): string {
  const q = url.indexOf("?");
  if (q < 0) return url;
  const params = new URLSearchParams(url.slice(q + 1));
  if (!names.some((n) => params.has(n))) return url;
  for (const n of names) params.delete(n);
  const rest = params.toString();
  return rest ? `${url.slice(0, q)}?${rest}` : url.slice(0, q);
}

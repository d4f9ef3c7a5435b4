/**
 * Which of the server's host names a request is for: a preview URL
 * (`<port>-<vmid>.<previewDomain>`), possibly a claimed domain, or the API. Pure functions, so
 * the routing decision is unit-tested apart from the proxy.
 *
 * The rule that keeps a tenant from taking over the API's host: a name can be a claimed domain
 * only when it lies under one of the operator's claimable suffixes and is none of the API's host
 * names; any other name is the API's, whatever the domains table holds (a row claimed under an
 * older config included). {@link checkHostNames} refuses, at start, a config where an API host
 * name and a claimable suffix overlap.
 * @module
 */

/** A VM id as the engine makes them (engine ids.ts): lower-case letters and digits. */
const VM_ID = "[a-z0-9]{1,32}";
/** 1..65535 without leading zeros. */
const PORT = "[1-9][0-9]{0,4}";
/** A DNS name: dot-separated labels of letters, digits and inner hyphens (RFC 1123), at most 253 characters. */
const HOSTNAME_RE = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

export type HostTarget = { kind: "preview"; vmId: string; port: number } | { kind: "other"; hostname: string };

/**
 * The Host header's name, lower-cased, without the port and a trailing dot; undefined when it is
 * absent or not a host name (an IPv6 literal, a bare IP or junk: those are the API's).
 */
export function hostnameOf(host: string | undefined): string | undefined {
  if (!host) return undefined;
  const name = host.trim().toLowerCase().replace(/:[0-9]{1,5}$/, "").replace(/\.$/, "");
  return HOSTNAME_RE.test(name) ? name : undefined;
}

/** True for a name that is a valid DNS host name (what a claimed domain must be). */
export function isHostname(name: string): boolean {
  return HOSTNAME_RE.test(name);
}

/** True when `name` is `domain` or one of its subdomains. */
export function isWithin(name: string, domain: string): boolean {
  return name === domain || name.endsWith(`.${domain}`);
}

/** The host names a server answers on, as its config gives them. */
export interface HostNames {
  previewDomain: string;
  /** The API's own names (the listen host, CAPSULE_API_HOSTNAMES): never a tenant's. */
  apiHostnames: readonly string[];
  /** Where tenants may claim domains (each suffix itself and below it); empty: nowhere. */
  domainSuffixes: readonly string[];
}

/**
 * Refuses (throws) host names that would let a tenant's page stand in for the API: an API host
 * name equal to, under or above a claimable suffix (a claimed page there could also set cookies
 * the API's host receives), or under a preview domain other than `localhost`.
 */
export function checkHostNames(names: HostNames): void {
  for (const api of names.apiHostnames) {
    // A preview page can set cookies for its parent domains, which the API's host would receive
    // (Chromium refuses `Domain=localhost`, so the default set-up is safe).
    if (names.previewDomain !== "localhost" && isWithin(api, names.previewDomain)) {
      throw new Error(`the API host name ${api} is under the preview domain ${names.previewDomain}: preview pages could set cookies the console receives; give previews a domain of their own (CAPSULE_PREVIEW_DOMAIN)`);
    }
    const overlap = names.domainSuffixes.find((s) => isWithin(api, s) || isWithin(s, api));
    if (overlap !== undefined) throw new Error(`the API host name ${api} overlaps the claimable domain suffix ${overlap}: a tenant could claim the API's host (or a name beside it); keep CAPSULE_DOMAIN_SUFFIXES apart from CAPSULE_API_HOSTNAMES and the listen host`);
  }
}

export class HostRouter {
  readonly previewDomain: string;
  readonly #preview: RegExp;
  readonly #api: ReadonlySet<string>;
  readonly #suffixes: readonly string[];

  constructor(names: HostNames) {
    this.previewDomain = names.previewDomain;
    this.#api = new Set(names.apiHostnames);
    this.#suffixes = names.domainSuffixes;
    this.#preview = new RegExp(`^(${PORT})-(${VM_ID})\\.${names.previewDomain.replace(/[.]/g, "\\.")}$`);
  }

  /** A preview host's VM and port; a name under a claimable suffix for a domain lookup; undefined: the API. */
  route(host: string | undefined): HostTarget | undefined {
    const hostname = hostnameOf(host);
    if (!hostname) return undefined;
    const m = this.#preview.exec(hostname);
    if (m) {
      const port = Number(m[1]);
      return port <= 65535 ? { kind: "preview", vmId: m[2] as string, port } : undefined;
    }
    // Under the preview domain but not a preview host (the bare domain, junk): the API's.
    if (isWithin(hostname, this.previewDomain)) return undefined;
    if (this.#api.has(hostname) || !this.#suffixes.some((s) => isWithin(hostname, s))) return undefined;
    return { kind: "other", hostname };
  }

  /** The preview URL of a VM port, for a server reached at `origin` (its scheme and port are kept). */
  previewUrl(origin: URL, vmId: string, port: number): string {
    return `${origin.protocol}//${port}-${vmId}.${this.previewDomain}${origin.port ? `:${origin.port}` : ""}/`;
  }
}

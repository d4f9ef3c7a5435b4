/**
 * Which repository URLs builds may clone: the operator's prefixes (`repoPrefixes`), none by
 * default. URLs are compared after WHATWG normalization (so `..`, case of the scheme and host,
 * default ports cannot slip past a prefix), and a prefix matches whole path segments only
 * (`https://git.example/team` allows `https://git.example/team/app`, not `.../team-evil/app`).
 * @module
 */

/** The schemes a prefix may name: git's smart or dumb HTTP, nothing that runs a program (ssh, ext, file). */
export const REPO_SCHEMES = ["https", "http"] as const;

export class RepoPolicy {
  readonly prefixes: readonly string[];
  /** The schemes of the allowed prefixes: git may use these and no other. */
  readonly schemes: readonly string[];

  constructor(prefixes: readonly string[]) {
    this.prefixes = prefixes.map((p) => {
      const url = normalizeRepoUrl(p);
      if (url === undefined) throw new Error(`repoPrefixes: expected an http(s) URL without credentials, query or fragment, got ${JSON.stringify(p)}`);
      return url;
    });
    this.schemes = [...new Set(this.prefixes.map((p) => new URL(p).protocol.slice(0, -1)))];
  }

  /** The normalized URL when a prefix allows it, else undefined. */
  allowed(repo: string): string | undefined {
    const url = normalizeRepoUrl(repo);
    if (url === undefined) return undefined;
    return this.prefixes.some((p) => url === p || url.startsWith(p.endsWith("/") ? p : `${p}/`)) ? url : undefined;
  }
}

/** An http(s) URL as git will be given it, or undefined for anything else (ids, ssh, credentials). */
export function normalizeRepoUrl(s: string): string | undefined {
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    return undefined;
  }
  if (!(REPO_SCHEMES as readonly string[]).includes(url.protocol.slice(0, -1))) return undefined;
  if (url.username !== "" || url.password !== "" || url.search !== "" || url.hash !== "" || url.hostname === "" || /[?#]/.test(url.href)) return undefined;
  return url.href;
}

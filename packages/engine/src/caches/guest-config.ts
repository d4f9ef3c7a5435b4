import net from "node:net";
import { guestCacheUrl, PACKAGE_CACHE_PORTS, type PackageCache } from "./ports.js";

/**
 * What makes apt and npm inside a VM use the host's caches with nothing configured by the
 * tenant: one config file per cache, written by the engine to the VM's guest-files tmpfs and
 * bind-mounted over the path the tool reads (like /etc/hosts), never written into the VM's
 * disk. A tenant overrides them the usual ways (a later apt.conf.d file, ~/.npmrc, a project's
 * .npmrc, NPM_CONFIG_REGISTRY).
 */
export interface GuestCacheFile {
  /** Name on the guest-files tmpfs (`etc/`). */
  file: string;
  /** Where the VM sees it. */
  destination: string;
  content: string;
}

export function guestCacheFile(cache: PackageCache): GuestCacheFile {
  switch (cache) {
    case "apt":
      return {
        file: "apt-package-cache.conf",
        destination: "/etc/apt/apt.conf.d/00capsule-package-cache",
        content: [
          "// Capsule: apt fetches http:// sources through the host's package cache (Debian and",
          "// debian-security only), so it works without internet. https:// sources are not proxied.",
          `Acquire::http::Proxy "${guestCacheUrl("apt")}/";`,
          "",
        ].join("\n"),
      };
    case "npm":
      return {
        file: "npmrc",
        destination: "/etc/npmrc",
        content: [
          "; Capsule: npm installs through the host's cache of registry.npmjs.org, so it works without",
          "; internet. The cache serves packages, not audits.",
          `registry=${guestCacheUrl("npm")}/`,
          "audit=false",
          "fund=false",
          "update-notifier=false",
          "",
        ].join("\n"),
      };
  }
}

/** How long a boot waits for a cache's loopback listener to accept before leaving it out. */
export const CACHE_PROBE_MS = 250;

/**
 * The caches that accept a connection now. A VM is configured only for those, so apt and npm in
 * a VM with internet still work directly on a host where the caches are not running.
 */
export async function answeringCaches(): Promise<PackageCache[]> {
  const caches = Object.keys(PACKAGE_CACHE_PORTS) as PackageCache[];
  const up = await Promise.all(caches.map((c) => accepts(PACKAGE_CACHE_PORTS[c].listen)));
  return caches.filter((_, i) => up[i]);
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port, timeout: CACHE_PROBE_MS });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.once("connect", () => done(true));
    s.once("timeout", () => done(false));
    s.once("error", () => done(false));
  });
}

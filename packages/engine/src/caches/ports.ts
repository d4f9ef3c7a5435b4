/**
 * Where the host's package caches listen, and where VMs reach them. VMs connect to
 * `host.capsule.internal` (the host alias, or their own gateway) on the guest ports; the engine's firewall
 * DNATs those connections to the caches' loopback listeners, so the caches are bound to
 * 127.0.0.1 only and nothing off the host can reach them. The listener ports differ from the
 * well-known ones so an apt-cacher-ng the operator runs for other purposes (port 3142) does
 * not clash with Capsule's. scripts/package-caches.sh starts the listeners on these ports (a
 * unit test keeps the two in step).
 */
export const PACKAGE_CACHE_PORTS = Object.freeze({
  apt: Object.freeze({ guest: 3142, listen: 13142 }),
  npm: Object.freeze({ guest: 4873, listen: 14873 }),
});

export type PackageCache = keyof typeof PACKAGE_CACHE_PORTS;

/** The URL a VM uses for a cache. */
export function guestCacheUrl(cache: PackageCache): string {
  return `http://host.capsule.internal:${PACKAGE_CACHE_PORTS[cache].guest}`;
}

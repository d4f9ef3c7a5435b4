import fs from "node:fs/promises";
import os from "node:os";
import { run, runQuiet } from "../host/run.js";
import { checkConntrackRoom, forgetFlows } from "./conntrack.js";
import type { Lease } from "./ipam.js";

/**
 * One network namespace per VM with a veth pair: `cv…` on the host, `eth0` inside. The VM's
 * default route is the host end; what it may reach beyond that is decided by the firewall.
 * `packageCaches`: the host end routes to loopback (`route_localnet`), so the firewall can DNAT
 * the VM's connections to the package caches' loopback listeners; the firewall rejects every
 * other packet from a VM to 127.0.0.0/8. The host end has IPv6 disabled. The /30's conntrack
 * entries are flushed first: none left from an earlier VM on it (net/conntrack.ts).
 */
export async function createNetns(ns: string, hostIf: string, lease: Lease, packageCaches: boolean): Promise<void> {
  // The flush runs beside the link's set-up (~20 ms each): the VM starts only after both, so
  // nothing of its own can be among what it deletes.
  const results = await Promise.allSettled([forgetFlows(`${lease.hostIp}/${lease.prefix}`), setUpLink(ns, hostIf, lease, packageCaches)]);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    await deleteNetns(ns, hostIf); // made half-way: the caller undoes only a netns it was given
    throw failed.reason;
  }
  await checkConntrackRoom();
}

async function setUpLink(ns: string, hostIf: string, lease: Lease, packageCaches: boolean): Promise<void> {
  // Two `ip -batch` runs instead of eight processes: each ip start costs ~15 ms here.
  await run("ip", ["netns", "add", ns]);
  await run("ip", ["-batch", "-"], {
    input: [
      `link add ${hostIf} type veth peer name eth0 netns ${ns}`,
      `addr add ${lease.hostIp}/${lease.prefix} dev ${hostIf}`,
      `link set ${hostIf} up`,
      "",
    ].join("\n"),
  });
  // No IPv6 on the host end: no link-local address a VM could reach, no router advertisement it
  // could make the host accept (the firewall also drops every IPv6 packet from a VM).
  await fs.writeFile(`/proc/sys/net/ipv6/conf/${hostIf}/disable_ipv6`, "1");
  if (packageCaches) await fs.writeFile(`/proc/sys/net/ipv4/conf/${hostIf}/route_localnet`, "1");
  await run("ip", ["-n", ns, "-batch", "-"], {
    input: [
      `addr add ${lease.guestIp}/${lease.prefix} dev eth0`,
      // No IPv6 link-local address for netstack to copy into the sandbox.
      "link set eth0 addrgenmode none",
      "link set eth0 up",
      "link set lo up",
      `route add default via ${lease.hostIp}`,
      "",
    ].join("\n"),
  });
}

/**
 * Deleting the namespace destroys its end of the veth, which takes the host end with it. Then
 * the link's conntrack entries go too (its idle connections' would stay for days): its /30 is
 * read off the host end first, as only the live interface still knows it. A flush that fails is
 * a warning, not a failed teardown; the next VM on that /30 flushes it before it starts.
 */
export async function deleteNetns(ns: string, hostIf: string): Promise<void> {
  const link = os.networkInterfaces()[hostIf]?.find((a) => a.family === "IPv4")?.cidr ?? undefined;
  await runQuiet("ip", ["netns", "del", ns]);
  await runQuiet("ip", ["link", "del", hostIf]);
  if (link === undefined) return;
  await forgetFlows(link).catch((err: unknown) => {
    process.emitWarning(`conntrack entries of ${hostIf} (${link}) were not flushed: ${(err as Error).message}`, "CapsuleConntrackWarning");
  });
}

export function netnsPath(ns: string): string {
  return `/run/netns/${ns}`;
}

export async function netnsExists(ns: string): Promise<boolean> {
  return fs.access(netnsPath(ns)).then(
    () => true,
    () => false,
  );
}

/** Namespaces on this host whose name starts with `prefix`. */
export async function listNetns(prefix: string): Promise<string[]> {
  try {
    return (await fs.readdir("/run/netns")).filter((n) => n.startsWith(prefix));
  } catch {
    return [];
  }
}

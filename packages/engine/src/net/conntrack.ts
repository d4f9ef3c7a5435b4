import fs from "node:fs/promises";
import { CommandError, run } from "../host/run.js";
import { MAX_CONNTRACK_ENTRIES_PER_VM } from "./firewall.js";
import { IPAM_DIR } from "./ipam.js";

/**
 * A VM's entries in the host's one conntrack table, past its own network's life. The firewall
 * bounds what a running VM holds (`MAX_CONNTRACK_ENTRIES_PER_VM`), but an entry outlives the
 * VM's interface: an idle connection's stays ESTABLISHED for its timeout, so every stop and
 * start could leave up to 512 more behind, and a VM given the same /30 later would meet them,
 * each one a tuple its firewall takes for an established flow. So a VM's link is flushed when its
 * network is torn down and again before a new one is set up on the same /30.
 */

/** Entries of the host's table that VMs never get, for the host's own connections (API clients, ssh, the caches' upstream fetches). */
export const CONNTRACK_HOST_RESERVE = 65_536;

/** Where the kernel says how many entries its table may hold. */
const CONNTRACK_MAX_FILE = "/proc/sys/net/netfilter/nf_conntrack_max";

/**
 * Deletes every conntrack entry from or to `cidr` (a VM's /30, both directions): its egress and
 * host-port flows (original source) and flows other VMs or the host opened to it (original
 * destination). Sequential: most of a VM's flows go to its own gateway and match both.
 */
export async function forgetFlows(cidr: string): Promise<void> {
  for (const direction of ["--orig-src", "--orig-dst"]) {
    await run("conntrack", ["-D", direction, cidr]).catch((err: unknown) => {
      // conntrack exits 1 when nothing matched.
      if (!(err instanceof CommandError && err.exitCode === 1 && /\b0 flow entries have been deleted/.test(err.stderr))) throw err;
    });
  }
}

/** VMs the host's table holds with each at its bound and the host's reserve left over. */
export function vmsConntrackHolds(conntrackMax: number): number {
  return Math.max(0, Math.floor((conntrackMax - CONNTRACK_HOST_RESERVE) / MAX_CONNTRACK_ENTRIES_PER_VM));
}

/** What to warn of when `vms` VMs have a network on a host whose table holds `conntrackMax` entries; undefined when they fit. */
export function conntrackShortfall(vms: number, conntrackMax: number): string | undefined {
  const holds = vmsConntrackHolds(conntrackMax);
  if (vms <= holds) return undefined;
  return (
    `this host runs ${vms} VMs, but its conntrack table (nf_conntrack_max ${conntrackMax}) holds ${holds} at ` +
    `${MAX_CONNTRACK_ENTRIES_PER_VM} entries each with ${CONNTRACK_HOST_RESERVE} left for the host: together they can fill it, ` +
    "and then the host drops every new connection. Rerun scripts/setup.sh with CAPSULE_MAX_VMS set to the VMs this host runs at once, " +
    `or set net.netfilter.nf_conntrack_max to at least VMs x ${MAX_CONNTRACK_ENTRIES_PER_VM} + ${CONNTRACK_HOST_RESERVE}`
  );
}

let warned = false;

/**
 * Warns (once per process) when the host has more VMs with a network (every engine's, as the
 * address claims say) than its conntrack table holds at their bound: past that, VMs together can
 * fill it, and a full table drops every new connection on the host. scripts/setup.sh sizes the
 * table (CAPSULE_MAX_VMS); this says when a host outgrew it.
 */
export async function checkConntrackRoom(): Promise<void> {
  if (warned) return;
  const max = Number((await fs.readFile(CONNTRACK_MAX_FILE, "utf8").catch(() => "")).trim() || NaN);
  if (!Number.isFinite(max)) return; // conntrack not loaded: no table to fill yet
  const shortfall = conntrackShortfall((await fs.readdir(IPAM_DIR).catch(() => [])).length, max);
  if (shortfall === undefined) return;
  warned = true;
  process.emitWarning(shortfall, "CapsuleConntrackWarning");
}

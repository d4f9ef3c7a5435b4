import fs from "node:fs/promises";
import { run } from "./host/run.js";
import type { NetworkStack, ResolvedOptions } from "./config.js";
import { EngineError, ErrorCode } from "./errors.js";
import { probeNetstack } from "./runtime/netstack-probe.js";
import { resolveBundle } from "./vm-host.js";

/** What start-up found this host's sandboxes can do. */
export interface EngineFeatures {
  /** The runsc VMs' network stack: the one asked for, or what `auto` chose. */
  network: NetworkStack;
  /** Whether runsc can checkpoint a running VM (memory snapshots): only on netstack. */
  checkpoint: boolean;
}

/**
 * Checks that this host can run sandboxes before anything is created, and says exactly what is
 * missing and how to get it.
 */
export async function checkHost(opts: ResolvedOptions): Promise<EngineFeatures> {
  const problems: string[] = [];
  if (process.getuid?.() !== 0) problems.push("the engine must run as root (it mounts filesystems and creates network namespaces)");
  const tools: Array<[string, string[], string]> = [
    [opts.runscPath, ["--version"], "runsc (gVisor) — scripts/setup.sh installs it"],
    ["ip", ["-V"], "iproute2 (apt-get install iproute2)"],
    ["nft", ["--version"], "nftables (apt-get install nftables)"],
    // Required, not optional: without it a stopped VM's open flows stay in the host's conntrack table, for a later VM on its /30 to meet.
    ["conntrack", ["--version"], "conntrack (apt-get install conntrack)"],
    ["nsenter", ["--version"], "util-linux nsenter"],
    ["mkfs.ext4", ["-V"], "e2fsprogs (apt-get install e2fsprogs)"],
  ];
  for (const [bin, args, hint] of tools) {
    if (!(await run(bin, args).then(() => true, () => false))) problems.push(`missing ${hint}`);
  }
  const bundle = await resolveBundle(opts.agentBundleDir);
  for (const f of ["bin/node", "bin/tini", "bin/capsule-spawn", "agent/main.js", "lib/ld-linux-x86-64.so.2"]) {
    if (!(await fs.access(`${bundle}/${f}`).then(() => true, () => false))) {
      problems.push(`the guest agent bundle at ${opts.agentBundleDir} lacks ${f} (build it: node packages/agent/scripts/bundle.mjs ${opts.agentBundleDir})`);
      break;
    }
  }
  const fsTypes = await fs.readFile("/proc/filesystems", "utf8").catch(() => "");
  if (!/\boverlay\b/.test(fsTypes)) problems.push("the kernel has no overlayfs (modprobe overlay)");
  // The netstack probe needs runsc and the bundle, so it runs only when nothing else is missing.
  const network = problems.length > 0 ? "hostinet" : await networkStack(opts, bundle, problems);
  if (problems.length > 0) {
    throw new EngineError(ErrorCode.HostNotReady, `this host cannot run Capsule sandboxes yet:\n  - ${problems.join("\n  - ")}`);
  }
  return { network, checkpoint: network === "netstack" };
}

/**
 * `netstack` must start (else a problem is added), `auto` takes netstack only if it starts, and
 * `hostinet` needs no probe.
 */
async function networkStack(opts: ResolvedOptions, bundle: string, problems: string[]): Promise<NetworkStack> {
  const asked: unknown = opts.network;
  if (asked !== "netstack" && asked !== "hostinet" && asked !== "auto") {
    throw new EngineError(ErrorCode.InvalidArgument, `network must be netstack, hostinet or auto, got ${JSON.stringify(asked)}`);
  }
  if (asked === "hostinet") return "hostinet";
  const why = await probeNetstack(opts.runscPath, opts.runscPlatform, bundle);
  if (why === undefined) return "netstack";
  if (asked === "netstack") {
    problems.push(
      `runsc (${opts.runscPath}) cannot start gVisor's netstack in a network namespace (${why}); scripts/setup.sh installs one that can ` +
        "(built by scripts/build-runsc.sh), or set runscPath to such a runsc, or network to hostinet (no memory snapshots) or auto",
    );
  }
  return "hostinet";
}

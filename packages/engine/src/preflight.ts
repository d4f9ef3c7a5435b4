import fs from "node:fs/promises";
import { run } from "./host/run.js";
import type { ResolvedOptions } from "./config.js";
import { EngineError, ErrorCode } from "./errors.js";
import { resolveBundle } from "./vm-host.js";

/**
 * Checks that this host can run sandboxes before anything is created, and says exactly what is
 * missing and how to get it.
 */
export async function checkHost(opts: ResolvedOptions): Promise<void> {
  const problems: string[] = [];
  if (process.getuid?.() !== 0) problems.push("the engine must run as root (it mounts filesystems and creates network namespaces)");
  const tools: Array<[string, string[], string]> = [
    [opts.runscPath, ["--version"], "runsc (gVisor) — scripts/setup.sh installs it"],
    ["ip", ["-V"], "iproute2 (apt-get install iproute2)"],
    ["nft", ["--version"], "nftables (apt-get install nftables)"],
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
  if (problems.length > 0) {
    throw new EngineError(ErrorCode.HostNotReady, `this host cannot run Capsule sandboxes yet:\n  - ${problems.join("\n  - ")}`);
  }
}

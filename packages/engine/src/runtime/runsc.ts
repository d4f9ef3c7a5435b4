import type { NetworkStack } from "../config.js";
import { OciCliRuntime } from "./oci-cli.js";

/**
 * gVisor, on one of two network stacks inside the VM's namespace:
 * - `netstack`: gVisor's own (`--network=sandbox`). runsc gets the namespace as the spec's network
 *   namespace and moves the veth's address and routes into the sandbox (the namespace's `eth0`
 *   keeps its MAC and link, but no address). `--net-disconnect-ok` lets a checkpoint reset open
 *   connections instead of refusing to save them.
 * - `hostinet`: the host kernel's (`--network=host`), with runsc started under `nsenter --net` (not
 *   `ip netns exec`, which remounts /sys and hides the cgroup filesystems runsc needs for limits).
 *   runsc refuses to checkpoint such a sandbox.
 * `--overlay2=none` makes writes land in the rootfs directory (our overlay), where snapshots can
 * copy them. `--host-uds=create` lets the agent listen on a host-visible unix socket.
 */
export class RunscRuntime extends OciCliRuntime {
  readonly name = "runsc" as const;
  readonly netnsInSpec: boolean;

  constructor(
    bin: string,
    root: string,
    private readonly platform: string,
    readonly network: NetworkStack,
  ) {
    super(bin, root);
    this.netnsInSpec = network === "netstack";
  }

  protected globalArgs(): string[] {
    return [`--root=${this.root}`];
  }

  protected runArgv(id: string, bundleDir: string, netnsPath: string): { cmd: string; args: string[] } {
    const args = [`--root=${this.root}`, `--platform=${this.platform}`, ...runscNetworkFlags(this.network), "--overlay2=none", "--host-uds=create", "run", "--detach", `--bundle=${bundleDir}`, id];
    return this.network === "netstack" ? { cmd: this.bin, args } : { cmd: "nsenter", args: [`--net=${netnsPath}`, "--", this.bin, ...args] };
  }
}

/** runsc's flags for a network stack (the sandbox's `run` and the start-up probe use the same). */
export function runscNetworkFlags(network: NetworkStack): string[] {
  return network === "netstack" ? ["--network=sandbox", "--net-disconnect-ok"] : ["--network=host"];
}

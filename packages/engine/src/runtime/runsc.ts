import { OciCliRuntime } from "./oci-cli.js";

/**
 * gVisor. Its own netstack refuses to start on this kernel (it mistakes every namespace for the
 * root one), so the sandbox uses `--network=host` *inside* the VM's namespace: runsc is started
 * under `nsenter --net` (not `ip netns exec`, which remounts /sys and hides the cgroup
 * filesystems runsc needs for limits). `--overlay2=none` makes writes land in the rootfs
 * directory (our overlay), where snapshots can copy them. `--host-uds=create` lets the agent
 * listen on a host-visible unix socket.
 */
export class RunscRuntime extends OciCliRuntime {
  readonly name = "runsc" as const;

  constructor(
    bin: string,
    root: string,
    private readonly platform: string,
  ) {
    super(bin, root);
  }

  protected globalArgs(): string[] {
    return [`--root=${this.root}`];
  }

  protected runArgv(id: string, bundleDir: string, netnsPath: string): { cmd: string; args: string[] } {
    return {
      cmd: "nsenter",
      args: [
        `--net=${netnsPath}`,
        "--",
        this.bin,
        `--root=${this.root}`,
        `--platform=${this.platform}`,
        "--network=host",
        "--overlay2=none",
        "--host-uds=create",
        "run",
        "--detach",
        `--bundle=${bundleDir}`,
        id,
      ],
    };
  }
}

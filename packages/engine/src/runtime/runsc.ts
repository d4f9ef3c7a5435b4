import type { NetworkStack } from "../config.js";
import { EngineError, ErrorCode } from "../errors.js";
import { run } from "../host/run.js";
import { OciCliRuntime } from "./oci-cli.js";
import type { RestoreGate } from "./types.js";

/** How long one `runsc checkpoint` or `restore` may take: a save writes the sandbox's memory, up to its limit. */
export const RUNSC_MEMORY_TIMEOUT_MS = 120_000;
/** How long the `runsc exec` that renames a restored copy (or the `runsc --version` that tells whether it must) may take. */
const SET_HOSTNAME_TIMEOUT_MS = 10_000;
/** The line a runsc built with scripts/runsc-patches prints in `--version`: its restore sets the target spec's hostname. */
const RESTORE_HOSTNAME_MARK = /^capsule: restore-hostname$/m;

/**
 * gVisor, on one of two network stacks inside the VM's namespace:
 * - `netstack`: gVisor's own (`--network=sandbox`). runsc gets the namespace as the spec's network
 *   namespace and moves the veth's address and routes into the sandbox (the namespace's `eth0`
 *   keeps its MAC and link, but no address). `--net-disconnect-ok` lets a checkpoint reset open
 *   connections instead of refusing to save them. A restore into another namespace takes that
 *   namespace's address the same way, so a restored copy has its own.
 * - `hostinet`: the host kernel's (`--network=host`), with runsc started under `nsenter --net` (not
 *   `ip netns exec`, which remounts /sys and hides the cgroup filesystems runsc needs for limits).
 *   runsc refuses to checkpoint such a sandbox.
 * `--overlay2=none` makes writes land in the rootfs directory (our overlay), where snapshots can
 * copy them. `--host-uds=create` lets the agent listen on a host-visible unix socket.
 * This class is the one place that knows runsc's argv.
 */
export class RunscRuntime extends OciCliRuntime {
  readonly name = "runsc" as const;
  readonly netnsInSpec: boolean;
  readonly canCheckpoint: boolean;

  constructor(
    bin: string,
    root: string,
    private readonly platform: string,
    readonly network: NetworkStack,
  ) {
    super(bin, root);
    this.netnsInSpec = network === "netstack";
    this.canCheckpoint = network === "netstack";
  }

  protected globalArgs(): string[] {
    return [`--root=${this.root}`];
  }

  /** The flags a sandbox is started with; a restore needs the same ones as the run it continues. */
  private sandboxArgs(): string[] {
    return [`--root=${this.root}`, `--platform=${this.platform}`, ...runscNetworkFlags(this.network), "--overlay2=none", "--host-uds=create"];
  }

  protected runArgv(id: string, bundleDir: string, netnsPath: string): { cmd: string; args: string[] } {
    const args = [...this.sandboxArgs(), "run", "--detach", `--bundle=${bundleDir}`, id];
    return this.network === "netstack" ? { cmd: this.bin, args } : { cmd: "nsenter", args: [`--net=${netnsPath}`, "--", this.bin, ...args] };
  }

  /** Uncompressed: runsc's default compression costs 2 to 3 times the save's time for images kept on this host. */
  async checkpoint(id: string, imageDir: string): Promise<void> {
    this.#requireCheckpoint();
    await run(this.bin, [...this.globalArgs(), "checkpoint", "--leave-running", "--compression=none", `--image-path=${imageDir}`, id], { timeoutMs: RUNSC_MEMORY_TIMEOUT_MS });
  }

  /**
   * Never under `nsenter`: a netstack sandbox joins its namespace through the spec. With `gate`,
   * `runsc create` makes the container first (sandbox and gofer processes, seccomp filters: most
   * of a cold restore's time) and the same `runsc restore` then finds it created and loads the
   * image into it.
   */
  async restore(id: string, imageDir: string, bundleDir: string, _netnsPath: string, logFile: string, gate?: RestoreGate): Promise<void> {
    this.#requireCheckpoint();
    if (gate) {
      await this.startDetached(this.bin, [...this.sandboxArgs(), "create", `--bundle=${bundleDir}`, id], logFile, "create", RUNSC_MEMORY_TIMEOUT_MS);
      await gate();
    }
    const args = [...this.sandboxArgs(), "restore", "--detach", `--image-path=${imageDir}`, `--bundle=${bundleDir}`, id];
    await this.startDetached(this.bin, args, logFile, "restore", RUNSC_MEMORY_TIMEOUT_MS);
  }

  /**
   * After a restore: a runsc built with scripts/runsc-patches already gave the restored kernel
   * its target spec's hostname (its `--version` says `capsule: restore-hostname`); any other
   * left the source's, so the image's hostname(1) (Debian's is essential) renames it, run with the
   * one capability it needs.
   */
  async setHostname(id: string, hostname: string): Promise<void> {
    if (await this.#restoreSetsHostname()) return;
    await run(this.bin, [...this.globalArgs(), "exec", "--cap=CAP_SYS_ADMIN", id, "hostname", hostname], { timeoutMs: SET_HOSTNAME_TIMEOUT_MS });
  }

  /** Asked once per binary (a failed ask is asked again); false when runsc says nothing of it. */
  #restoreSetsHostname(): Promise<boolean> {
    this.#restoresHostname ??= run(this.bin, ["--version"], { timeoutMs: SET_HOSTNAME_TIMEOUT_MS }).then(
      (r) => RESTORE_HOSTNAME_MARK.test(r.stdout),
      (err: unknown) => {
        this.#restoresHostname = undefined;
        throw err;
      },
    );
    return this.#restoresHostname;
  }
  #restoresHostname: Promise<boolean> | undefined;

  #requireCheckpoint(): void {
    if (!this.canCheckpoint) throw new EngineError(ErrorCode.Unsupported, "runsc cannot checkpoint a sandbox on host networking (hostinet); run the engine on netstack");
  }
}

/** runsc's flags for a network stack (the sandbox's `run` and the start-up probe use the same). */
export function runscNetworkFlags(network: NetworkStack): string[] {
  return network === "netstack" ? ["--network=sandbox", "--net-disconnect-ok"] : ["--network=host"];
}

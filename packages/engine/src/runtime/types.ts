/** What the engine needs from an OCI runtime. One implementation per runtime, same contract. */
import type { NetworkStack } from "../config.js";

/** Called once a restore's target is made; the restore into it waits for the promise it returns. */
export type RestoreGate = () => Promise<void>;

export interface Runtime {
  readonly name: "runsc" | "runc";
  /** The network stack this runtime's sandboxes get (runsc's netstack or hostinet); runc: undefined, the host kernel's. */
  readonly network: NetworkStack | undefined;
  /**
   * Whether {@link checkpoint} and {@link restore} work here: runsc on netstack only. runsc
   * refuses to save a hostinet sandbox, and runc has no memory checkpoints at all (CRIU does not
   * run on these kernels); where this is false both reject with UNSUPPORTED.
   */
  readonly canCheckpoint: boolean;
  /** The VM's netns goes into the OCI spec (the runtime joins it); otherwise `run` starts the runtime inside it. */
  readonly netnsInSpec: boolean;
  /** Creates and starts the container detached; resolves once the runtime reports it started. */
  run(id: string, bundleDir: string, netnsPath: string, logFile: string): Promise<void>;
  /** `running`, `paused`, `stopped`, `created`, or `absent` when the runtime does not know it. */
  state(id: string): Promise<string>;
  pause(id: string): Promise<void>;
  resume(id: string): Promise<void>;
  /**
   * Stops every process of the container at once through its freezer cgroup, for a hold of
   * milliseconds (a snapshot's copy); false when it has none here (use pause then).
   */
  freeze(id: string): Promise<boolean>;
  /** Undoes freeze; a container that is not frozen is left alone. */
  thaw(id: string): Promise<void>;
  /**
   * Saves the sandbox's memory and kernel state into `imageDir` (uncompressed) and leaves the
   * sandbox as it was: a paused one stays paused, a running one runs on.
   */
  checkpoint(id: string, imageDir: string): Promise<void>;
  /**
   * Starts a new sandbox `id` from `imageDir` on the bundle's spec (which must have the same
   * mounts as the one the image was taken with), detached like {@link run}. With `gate` the
   * target is made first: its processes started, its rootfs opened (so the bundle's rootfs must
   * be mounted already); then `gate` is called and the restore into it, which then only loads
   * the state, waits for what it returns (an image still being written, or a create that will
   * take a target made ahead). If that rejects, this rejects with its reason and leaves the made
   * target for {@link destroy}.
   */
  restore(id: string, imageDir: string, bundleDir: string, netnsPath: string, logFile: string, gate?: RestoreGate): Promise<void>;
  /**
   * Sets a running sandbox's UTS hostname. A restored copy's lives in its source's checkpointed
   * kernel, and root in the VM lacks CAP_SYS_ADMIN to change it, so the host does it.
   */
  setHostname(id: string, hostname: string): Promise<void>;
  /** Kills and removes the container; resolves when it is gone. Idempotent. */
  destroy(id: string): Promise<void>;
  /** Container ids known to this runtime root. */
  list(): Promise<string[]>;
}

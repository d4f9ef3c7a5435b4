/** What the engine needs from an OCI runtime. One implementation per runtime, same contract. */
export interface Runtime {
  readonly name: "runsc" | "runc";
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
  /** Kills and removes the container; resolves when it is gone. Idempotent. */
  destroy(id: string): Promise<void>;
  /** Container ids known to this runtime root. */
  list(): Promise<string[]>;
}

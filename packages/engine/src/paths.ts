import path from "node:path";

/**
 * Every on-disk and kernel name the engine uses is derived from the data dir and the VM id, so
 * recovery can find and remove whatever a crashed process left, from the record alone.
 */
export class Paths {
  constructor(readonly dataDir: string) {}

  get vmsDir(): string {
    return path.join(this.dataDir, "vms");
  }
  get snapshotsDir(): string {
    return path.join(this.dataDir, "snapshots");
  }
  get layersDir(): string {
    return path.join(this.dataDir, "layers");
  }
  /** Memory images of memory snapshots (`runsc checkpoint`), one directory each. */
  get memoryDir(): string {
    return path.join(this.dataDir, "memory");
  }
  get runtimeRoot(): string {
    return path.join(this.dataDir, "runtime");
  }
  get lockFile(): string {
    return path.join(this.dataDir, "engine.lock");
  }
  snapshotRecord(id: string): string {
    return path.join(this.snapshotsDir, `${id}.json`);
  }
  layer(id: string): string {
    return path.join(this.layersDir, id);
  }
  vm(id: string): VmPaths {
    const dir = path.join(this.vmsDir, id);
    return {
      dir,
      record: path.join(dir, "vm.json"),
      diskImage: path.join(dir, "disk.img"),
      diskMount: path.join(dir, "disk"),
      upper: path.join(dir, "disk", "upper"),
      work: path.join(dir, "disk", "work"),
      rootfs: path.join(dir, "rootfs"),
      guest: path.join(dir, "guest"),
      run: path.join(dir, "guest", "run"),
      socket: path.join(dir, "guest", "run", "agent.sock"),
      etc: path.join(dir, "guest", "etc"),
      bundle: path.join(dir, "bundle"),
      log: path.join(dir, "guest", "runtime.log"),
    };
  }
}

export interface VmPaths {
  dir: string;
  record: string;
  diskImage: string;
  diskMount: string;
  upper: string;
  work: string;
  rootfs: string;
  /**
   * A small tmpfs (see `disk/guest-files.ts`) holding every host file the VM can write to outside
   * its disk: `run/`, `etc/` and the runtime's log. Its size caps them all.
   */
  guest: string;
  /** Host side of the agent's socket directory (`/.capsule-run` in the VM). */
  run: string;
  socket: string;
  /** Host-managed /etc/hosts, /etc/resolv.conf and /etc/hostname, bind-mounted into the VM. */
  etc: string;
  bundle: string;
  /** The runtime's stdout/stderr, which the VM's PID 1 (and so its root) can write to. */
  log: string;
}

/** Kernel object names: bounded to 15 characters for interfaces. */
export function netnsName(vmId: string): string {
  return `cap-${vmId}`;
}
export function hostIfName(vmId: string): string {
  return `cv${vmId.slice(-12)}`;
}

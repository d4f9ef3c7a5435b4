import fs from "node:fs/promises";
import { run } from "../host/run.js";
import { isMounted } from "./mounts.js";
import type { VmPaths } from "../paths.js";

/**
 * The VM's writable layer lives in a sparse ext4 image of `diskMb` (only written blocks use host
 * disk), loop-mounted on the host. The image is the disk quota: a VM that fills it gets ENOSPC
 * inside and cannot touch the host's free space.
 */
export async function createDiskImage(p: VmPaths, diskMb: number): Promise<void> {
  const fh = await fs.open(p.diskImage, "wx", 0o600);
  await fh.truncate(diskMb * 1024 * 1024);
  await fh.close();
  // lazy init keeps mkfs at tens of milliseconds whatever the size; root-owned root dir.
  await run("mkfs.ext4", ["-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0", p.diskImage]);
}

/** Mounts the disk image (idempotent) and makes sure upper/ and work/ exist. */
export async function mountDisk(p: VmPaths): Promise<void> {
  await fs.mkdir(p.diskMount, { recursive: true });
  if (!(await isMounted(p.diskMount))) {
    // nodev, nosuid: nothing a VM writes into its layer may act as a device node, or as a
    // setuid/setgid program, for anyone on the host who reaches it through this mount. The VM
    // itself sees its files through the overlay mount, whose own flags keep `sudo` working.
    await run("mount", ["-o", "loop,nodev,nosuid,noatime", p.diskImage, p.diskMount]);
  }
  await fs.mkdir(p.upper, { recursive: true, mode: 0o755 });
  await fs.mkdir(p.work, { recursive: true, mode: 0o700 });
}

export async function unmountDisk(p: VmPaths): Promise<void> {
  await unmountIfMounted(p.diskMount);
}

/**
 * The VM's root: overlayfs of the read-only layers (newest first, base image last) under the
 * VM's upper dir. Nothing is copied, whatever the size of the layers.
 */
export async function mountRootfs(p: VmPaths, lowerDirs: string[]): Promise<void> {
  await fs.mkdir(p.rootfs, { recursive: true });
  if (await isMounted(p.rootfs)) return;
  const opts = `lowerdir=${lowerDirs.join(":")},upperdir=${p.upper},workdir=${p.work},nodev`;
  if (opts.length > 4000) {
    throw new Error(`snapshot chain too deep (${lowerDirs.length} layers) for one overlay mount`);
  }
  await run("mount", ["-t", "overlay", "overlay", "-o", opts, p.rootfs]);
}

export async function unmountRootfs(p: VmPaths): Promise<void> {
  await unmountIfMounted(p.rootfs);
}

export async function unmountIfMounted(dir: string): Promise<void> {
  if (!(await isMounted(dir))) return;
  try {
    await run("umount", [dir]);
  } catch {
    // Something still holds it (a dying runtime process): detach now, the kernel frees it later.
    await run("umount", ["-l", dir]);
  }
}

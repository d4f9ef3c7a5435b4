import fs from "node:fs/promises";
import { run } from "../host/run.js";
import type { VmPaths } from "../paths.js";
import { isMounted } from "./mounts.js";
import { unmountIfMounted } from "./writable.js";

/**
 * Bytes of the per-VM tmpfs behind every host-backed path a VM can write to outside its disk
 * image: the agent's socket dir (`/.capsule-run`), `/etc/hosts`, `/etc/resolv.conf`,
 * `/etc/hostname` and the runtime's log (the VM's PID 1 writes to it). Without it, root in a VM
 * could fill the host's filesystem past its disk quota through any of them. Plenty for hosts
 * files a user appends to; the guest's own writes fail with ENOSPC past it, the host's do not
 * matter (it writes these files once, before boot).
 */
export const GUEST_FILES_TMPFS_BYTES = 4 * 1024 * 1024;
/** Inodes on that tmpfs: the three /etc files, the socket, the log, and headroom. */
export const GUEST_FILES_TMPFS_INODES = 64;

/** Mounts the VM's guest-files tmpfs (idempotent) with `run/` (0700) and `etc/` in it. */
export async function mountGuestFiles(p: VmPaths): Promise<void> {
  await fs.mkdir(p.guest, { recursive: true, mode: 0o700 });
  if (!(await isMounted(p.guest))) {
    const opts = `size=${GUEST_FILES_TMPFS_BYTES},nr_inodes=${GUEST_FILES_TMPFS_INODES},mode=0700,nosuid,nodev,noexec`;
    await run("mount", ["-t", "tmpfs", "-o", opts, `capsule-guest`, p.guest]);
  }
  await fs.mkdir(p.run, { recursive: true, mode: 0o700 });
  await fs.chmod(p.run, 0o700);
  await fs.mkdir(p.etc, { recursive: true, mode: 0o755 });
}

/** Unmounts it (idempotent); its contents go with it. */
export async function unmountGuestFiles(p: VmPaths): Promise<void> {
  await unmountIfMounted(p.guest);
}

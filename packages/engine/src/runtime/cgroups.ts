import fs from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { pathExists } from "../state/store.js";

/**
 * A container's cgroups, as the engine touches them directly.
 *
 * Freezer: every process of the sandbox (gVisor's Sentry, gofer and
 * systrap stubs, or runc's processes) stopped at once by the kernel, as `runc pause` does. The
 * engine holds a VM still this way for the milliseconds a snapshot copies its upper dir; the
 * runtime CLI's `pause`/`resume` cost a process start each (20-30 ms for runsc here).
 *
 * Both runsc and runc name the container's cgroup after its id when the spec sets no
 * `cgroupsPath`, as Capsule's does: `/sys/fs/cgroup/freezer/<id>` (v1) or `/sys/fs/cgroup/<id>`
 * (v2). A host laid out otherwise has no freezer here, and the caller falls back to the CLI.
 */

const CGROUP_ROOT = "/sys/fs/cgroup";
/** How long a freeze may take before it is undone and reported as failed. */
export const FREEZE_TIMEOUT_MS = 2000;
const POLL_MS = 1;
/** Container ids are engine-made; anything else never becomes a path. */
const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

interface Freezer {
  /** The file written to freeze and thaw, and what is written. */
  control: string;
  frozen: string;
  thawed: string;
  /** Whether the kernel reports the whole cgroup frozen. */
  isFrozen(): Promise<boolean>;
}


async function freezerOf(id: string, root: string): Promise<Freezer | undefined> {
  if (!ID.test(id)) return undefined;
  const v1 = `${root}/freezer/${id}/freezer.state`;
  if (await pathExists(v1)) {
    return { control: v1, frozen: "FROZEN", thawed: "THAWED", isFrozen: async () => (await fs.readFile(v1, "utf8")).trim() === "FROZEN" };
  }
  const v2 = `${root}/${id}/cgroup.freeze`;
  const events = `${root}/${id}/cgroup.events`;
  if (await pathExists(v2)) {
    return { control: v2, frozen: "1", thawed: "0", isFrozen: async () => /^frozen 1$/m.test(await fs.readFile(events, "utf8")) };
  }
  return undefined;
}

/**
 * Freezes the container's cgroup and waits until the kernel reports every task frozen. Resolves
 * false when there is no freezer cgroup for it, or when it did not freeze within
 * FREEZE_TIMEOUT_MS (then it is thawed again): the caller uses the runtime's own pause.
 */
export async function freezeContainer(id: string, root = CGROUP_ROOT): Promise<boolean> {
  const f = await freezerOf(id, root);
  if (!f) return false;
  await fs.writeFile(f.control, f.frozen);
  const deadline = performance.now() + FREEZE_TIMEOUT_MS;
  try {
    while (!(await f.isFrozen())) {
      if (performance.now() > deadline) {
        await fs.writeFile(f.control, f.thawed);
        return false;
      }
      await sleep(POLL_MS);
    }
  } catch (err) {
    await fs.writeFile(f.control, f.thawed).catch(() => undefined);
    throw err;
  }
  return true;
}

/** Thaws the container's cgroup; a container without one, or not frozen, is left as it is. */
export async function thawContainer(id: string, root = CGROUP_ROOT): Promise<void> {
  const f = await freezerOf(id, root);
  if (f) await fs.writeFile(f.control, f.thawed);
}

/**
 * Removes the container's cgroups that are left once it is gone: the runtime removes them on a
 * normal delete, but not always for a sandbox that died (a guest that took its Sentry down, a
 * host crash). Only empty ones go (the kernel refuses the rest); returns how many were removed.
 */
export async function removeContainerCgroups(id: string, root = CGROUP_ROOT): Promise<number> {
  if (!ID.test(id)) return 0;
  const hierarchies = await fs.readdir(root).catch(() => [] as string[]);
  let removed = 0;
  for (const dir of [`${root}/${id}`, ...hierarchies.map((h) => `${root}/${h}/${id}`)]) {
    try {
      await fs.rmdir(dir);
      removed++;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ENOENT" && code !== "ENOTDIR" && code !== "EBUSY") throw err;
    }
  }
  return removed;
}

/**
 * The host processes of a VM's sandbox, for the benchmarks' memory and CPU figures: every process
 * in the sandbox's cgroup (named after the VM id: gVisor's Sentry and its systrap stub processes,
 * which hold the guest's memory and show as `[exe]`), plus any whose command line names the VM
 * (runsc's gofer, which may sit outside it). Counting by command line alone missed the stubs.
 * @module
 */
import { readdirSync, readFileSync } from "node:fs";

function cgroupProcs(id: string): number[] {
  const files = [`/sys/fs/cgroup/pids/${id}/cgroup.procs`, `/sys/fs/cgroup/memory/${id}/cgroup.procs`, `/sys/fs/cgroup/${id}/cgroup.procs`];
  for (const f of files) {
    try {
      return readFileSync(f, "utf8").split("\n").filter(Boolean).map(Number);
    } catch {
      /* not this layout */
    }
  }
  return [];
}

/** The pids of these VMs' sandboxes, each once. */
export function vmProcesses(ids: string[]): number[] {
  const pids = new Set(ids.flatMap(cgroupProcs));
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8");
      if (ids.some((id) => cmd.includes(id))) pids.add(Number(d));
    } catch {
      /* exited */
    }
  }
  return [...pids];
}

/** Proportional set size of these processes, KiB (those that exited meanwhile count 0). */
export function pssKiB(pids: number[]): number {
  let total = 0;
  for (const pid of pids) {
    try {
      total += Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"))?.[1] ?? 0);
    } catch {
      /* exited */
    }
  }
  return total;
}

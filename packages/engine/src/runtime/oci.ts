import type { VmLimits } from "../config.js";

/**
 * Docker's default capability set, less CAP_MKNOD (no VM needs device nodes, and under runc one
 * would land in the host's data dir) and CAP_NET_RAW (no raw sockets on the shared host bridge).
 */
const CAPS = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE",
  "CAP_SETFCAP",
];

/** The agent's startup snapshot in the bundle (agent/scripts/bundle.mjs), beside main.js. */
export const AGENT_SNAPSHOT = "agent/main.blob";

/**
 * The agent runs under tini (-s: subreaper, -g: signal the whole group) as PID 1's child, from
 * its startup snapshot when the bundle has one (a bundle built before snapshots has main.js only).
 */
export function agentArgs(fromSnapshot: boolean): string[] {
  return [
    "/.capsule/bin/tini",
    "-s",
    "-g",
    "--",
    "/.capsule/lib/ld-linux-x86-64.so.2",
    "--library-path",
    "/.capsule/lib",
    "/.capsule/bin/node",
    ...(fromSnapshot ? ["--snapshot-blob", `/.capsule/${AGENT_SNAPSHOT}`] : ["/.capsule/agent/main.js"]),
  ];
}

export interface SpecInput {
  hostname: string;
  rootfs: string;
  agentBundleDir: string;
  /** The bundle has {@link AGENT_SNAPSHOT}. */
  agentSnapshot: boolean;
  runDir: string;
  etcDir: string;
  /** More host-managed files in `etcDir`, each bind-mounted at its destination (the package caches' configs). */
  etcFiles?: ReadonlyArray<{ file: string; destination: string }>;
  limits: VmLimits;
  runtime: "runsc" | "runc";
  /** The network namespace the runtime joins through the spec (runc, runsc on netstack); runsc on hostinet is started inside it instead. */
  netnsPath?: string;
}

/**
 * Under runsc a guest task is not a host task, but it costs the sandbox host tasks all the same:
 * about two each (a systrap stub thread, Sentry threads), pooled and never given back. Measured: 73
 * host tasks at rest, 816 with 450 guest tasks. A guest that reached the host's pids cgroup would
 * take its own Sentry down (it cannot make a thread) instead of seeing EAGAIN. So under runsc the
 * limit a guest meets is gVisor's RLIMIT_NPROC, `pids` tasks per user (gVisor enforces it for root
 * too, and without CAP_SYS_RESOURCE no one in the VM can raise it), and the host cgroup, still the
 * host's own bound, leaves room for gVisor: 2 × pids + RUNSC_HOST_TASKS.
 *
 * runc gets no RLIMIT_NPROC: there it counts the host user's processes (uid 0 is the host's root),
 * and the pids cgroup alone already makes a fork fail with EAGAIN.
 */
export const RUNSC_HOST_TASKS = 256;

export function hostPidsLimit(runtime: "runsc" | "runc", pids: number): number {
  return runtime === "runsc" ? 2 * pids + RUNSC_HOST_TASKS : pids;
}

export function buildSpec(input: SpecInput): object {
  const { limits } = input;
  const periodUs = 100_000;
  const namespaces: Array<{ type: string; path?: string }> = [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }];
  if (input.netnsPath) namespaces.push({ type: "network", path: input.netnsPath });
  return {
    ociVersion: "1.0.2",
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: agentArgs(input.agentSnapshot),
      env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"],
      cwd: "/",
      capabilities: { bounding: CAPS, effective: CAPS, permitted: CAPS },
      noNewPrivileges: false,
      ...(input.runtime === "runsc" ? { rlimits: [{ type: "RLIMIT_NPROC", soft: limits.pids, hard: limits.pids }] } : {}),
    },
    root: { path: input.rootfs, readonly: false },
    hostname: input.hostname,
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
      { destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
      { destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
      { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
      { destination: "/.capsule", type: "bind", source: input.agentBundleDir, options: ["rbind", "ro", "nosuid", "nodev"] },
      { destination: "/.capsule-run", type: "bind", source: input.runDir, options: ["rbind", "rw", "nosuid", "nodev", "noexec"] },
      { destination: "/etc/hosts", type: "bind", source: `${input.etcDir}/hosts`, options: ["rbind", "rw"] },
      { destination: "/etc/resolv.conf", type: "bind", source: `${input.etcDir}/resolv.conf`, options: ["rbind", "rw"] },
      { destination: "/etc/hostname", type: "bind", source: `${input.etcDir}/hostname`, options: ["rbind", "rw"] },
      ...(input.etcFiles ?? []).map((f) => ({ destination: f.destination, type: "bind", source: `${input.etcDir}/${f.file}`, options: ["rbind", "rw"] })),
    ],
    linux: {
      namespaces,
      resources: {
        memory: { limit: limits.memoryMb * 1024 * 1024 },
        cpu: { quota: Math.round(limits.cpus * periodUs), period: periodUs },
        pids: { limit: hostPidsLimit(input.runtime, limits.pids) },
      },
      maskedPaths: ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
      readonlyPaths: ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    },
  };
}

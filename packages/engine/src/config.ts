import path from "node:path";
import { EngineError, ErrorCode } from "./errors.js";

export type RuntimeName = "runsc" | "runc";
export type Egress = "none" | "internet";
/**
 * How a runsc VM's network stack is provided. `netstack`: gVisor's own (`--network=sandbox`) in the
 * VM's netns; sandboxes on it can be checkpointed. `hostinet`: the host kernel's stack inside the
 * VM's netns (`--network=host`); runsc refuses to checkpoint those. runc VMs always use the kernel's.
 */
export type NetworkStack = "netstack" | "hostinet";
/** The engine's `network` when none is given. */
export const DEFAULT_NETWORK: NetworkStack | "auto" = "netstack";

/** Per-VM resource limits. Every field has a documented default in {@link DEFAULT_LIMITS}. */
export interface VmLimits {
  /** Memory limit of the whole sandbox, MiB. */
  memoryMb: number;
  /** CPU quota in cores (fractions allowed). */
  cpus: number;
  /** Host tasks (processes and threads) the sandbox may hold; bounds fork bombs. */
  pids: number;
  /** Size of the writable disk layer, MiB. Sparse: only written bytes use host disk. */
  diskMb: number;
}

export const DEFAULT_LIMITS: VmLimits = Object.freeze({
  memoryMb: 2048,
  cpus: 1,
  pids: 1024,
  diskMb: 10 * 1024,
});

export interface EngineOptions {
  /** Where VMs, snapshot layers and engine state live. Default `/var/lib/capsule`. */
  dataDir?: string;
  /** Where base images live (`<imagesDir>/<name>/rootfs`). Default `<dataDir>/images`. */
  imagesDir?: string;
  /** The guest agent bundle, mounted read-only at `/.capsule`. Default `<dataDir>/agent`. */
  agentBundleDir?: string;
  /** Default runtime for new VMs. Default `runsc`. */
  runtime?: RuntimeName;
  /** Image used when a VM names none. Default `trixie`. */
  defaultImage?: string;
  /** Default limits for new VMs; each field falls back to {@link DEFAULT_LIMITS}. */
  limits?: Partial<VmLimits>;
  /** Default egress for new VMs. Default `none`. */
  egress?: Egress;
  /**
   * Host TCP ports VMs may reach as `host.capsule.internal` (169.254.100.1 in every VM) or at their gateway address.
   * Everything else on the host is unreachable from VMs. Default: none.
   */
  allowedHostPorts?: number[];
  /**
   * Whether VMs may use the host's package caches (apt-cacher-ng and the npm registry cache that
   * scripts/package-caches.sh runs): their connections to `host.capsule.internal` on ports 3142
   * and 4873 reach the caches, whatever their egress or firewall policy, and apt and npm in the
   * VM are configured to use every cache that answers when the VM boots. The caches only fetch
   * public Debian and npm registry files. Default true.
   */
  packageCaches?: boolean;
  /** IPv4 pool carved into one /30 per VM. Default `10.213.0.0/16`. */
  subnet?: string;
  /** The runsc binary. Default: `runsc` on PATH. */
  runscPath?: string;
  /**
   * The runsc VMs' network stack. `netstack` and `hostinet` are what they say: with `netstack` and a
   * runsc that cannot start it, the engine does not open. `auto`: netstack when the runsc can start
   * it, else hostinet. Default `netstack` (scripts/setup.sh installs a runsc that starts it).
   */
  network?: NetworkStack | "auto";
  /** The runc binary. Default: `runc` on PATH. */
  runcPath?: string;
  /** runsc platform. Default `systrap`. */
  runscPlatform?: string;
  /** Milliseconds to wait for a booting VM's agent. Default 15000. */
  bootTimeoutMs?: number;
}

export type ResolvedOptions = Required<Omit<EngineOptions, "limits">> & { limits: VmLimits };

export function resolveOptions(opts: EngineOptions): ResolvedOptions {
  const dataDir = path.resolve(opts.dataDir ?? process.env.CAPSULE_DATA_DIR ?? "/var/lib/capsule");
  return Object.freeze({
    dataDir,
    imagesDir: path.resolve(opts.imagesDir ?? path.join(dataDir, "images")),
    agentBundleDir: path.resolve(opts.agentBundleDir ?? path.join(dataDir, "agent")),
    runtime: opts.runtime ?? "runsc",
    defaultImage: opts.defaultImage ?? "trixie",
    limits: { ...DEFAULT_LIMITS, ...opts.limits },
    egress: opts.egress ?? "none",
    allowedHostPorts: [...(opts.allowedHostPorts ?? [])],
    packageCaches: opts.packageCaches ?? true,
    subnet: opts.subnet ?? "10.213.0.0/16",
    runscPath: opts.runscPath ?? "runsc",
    network: opts.network ?? DEFAULT_NETWORK,
    runcPath: opts.runcPath ?? "runc",
    runscPlatform: opts.runscPlatform ?? "systrap",
    bootTimeoutMs: opts.bootTimeoutMs ?? 15_000,
  });
}

/** Checks and normalises limits; INVALID_ARGUMENT says which field is out of which range. */
export function validateLimits(l: VmLimits): VmLimits {
  const check = (name: keyof VmLimits, min: number, max: number) => {
    const v = l[name];
    if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) {
      throw new EngineError(ErrorCode.InvalidArgument, `limits.${name} must be a number from ${min} to ${max}, got ${String(v)}`);
    }
  };
  check("memoryMb", 64, 1024 * 1024);
  check("cpus", 0.05, 1024);
  check("pids", 16, 1 << 22);
  check("diskMb", 64, 16 * 1024 * 1024);
  return { memoryMb: Math.floor(l.memoryMb), cpus: l.cpus, pids: Math.floor(l.pids), diskMb: Math.floor(l.diskMb) };
}

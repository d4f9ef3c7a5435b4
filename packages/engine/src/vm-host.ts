import fs from "node:fs/promises";
import { AgentClient } from "./agent/client.js";
import { answeringCaches, guestCacheFile, type GuestCacheFile } from "./caches/guest-config.js";
import type { PackageCache } from "./caches/ports.js";
import { withRollback, type Cleanup } from "./cleanup.js";
import type { ResolvedOptions, RuntimeName } from "./config.js";
import { mountGuestFiles, unmountGuestFiles } from "./disk/guest-files.js";
import { createDiskImage, mountDisk, mountRootfs, unmountDisk, unmountRootfs } from "./disk/writable.js";
import { EngineError, ErrorCode, isEngineError } from "./errors.js";
import { allowPackageCaches, allowVm, applyVmPolicy, forgetVm, HOST_ALIAS_IPV4, mapHostAlias } from "./net/firewall.js";
import { claim, claimsOf, release, type Lease } from "./net/ipam.js";
import { createNetns, deleteNetns, netnsPath } from "./net/netns.js";
import { reachesPublic } from "./net/policy.js";
import { DirWake } from "./host/dir-wake.js";
import { restoreVm } from "./memory/checkpoint.js";
import { hostIfName, netnsName, type Paths, type VmPaths } from "./paths.js";
import { AGENT_SNAPSHOT, buildSpec } from "./runtime/oci.js";
import type { RestoreGate, Runtime } from "./runtime/types.js";
import type { Records, VmRecord } from "./state/records.js";
import { pathExists, writeJsonAtomic } from "./state/store.js";

export type { VmRecord } from "./state/records.js";

/**
 * How {@link VmHost.bringUp} starts the sandbox once its host side is ready: a fresh boot, or a
 * restore of a memory image, whose spec must mount what the image's sandbox had mounted (the
 * same agent bundle version, the same package-cache configs). A restore with `gate` makes its
 * target first ({@link Runtime.restore}) and restores into it once what `gate` returns resolves:
 * a fork's copies, while the source's image is still being written; a target made ahead for
 * the next create from a memory snapshot.
 */
export type StartHow =
  | { kind: "boot" }
  | { kind: "restore"; imageDir: string; agentBundle: string; caches: PackageCache[]; gate?: RestoreGate };

const BOOT: StartHow = { kind: "boot" };
/** How long one `hello` to a booting agent may take. */
const AGENT_HELLO_TIMEOUT_MS = 2000;
/** A booting agent is asked again this often, and sooner when its run dir changes, but never more often than the minimum. */
const AGENT_RETRY_MS = 5;
const AGENT_RETRY_MIN_MS = 1;

/**
 * Brings one VM's host-side resources up and down: disk, rootfs overlay, network namespace,
 * firewall membership and the sandbox itself. Every step of `bringUp` registers its undo; every
 * step of `tearDown` is idempotent, so both are safe to repeat after a crash.
 */
export class VmHost {
  constructor(
    private readonly opts: ResolvedOptions,
    private readonly paths: Paths,
    private readonly runtimes: Record<RuntimeName, Runtime>,
    private readonly records: Records,
  ) {}

  vmPaths(id: string): VmPaths {
    return this.paths.vm(id);
  }

  agent(id: string): AgentClient {
    return new AgentClient(this.paths.vm(id).socket);
  }

  lowerDirs(rec: VmRecord): string[] {
    return [...rec.layers.map((l) => this.paths.layer(l)), `${this.opts.imagesDir}/${rec.image}/rootfs`];
  }

  async createDisk(rec: VmRecord): Promise<void> {
    const p = this.paths.vm(rec.id);
    await fs.mkdir(p.dir, { recursive: true, mode: 0o700 });
    await createDiskImage(p, rec.limits.diskMb);
  }

  /**
   * Boots the VM (or restores it, see {@link StartHow}): its target is prepared, then started; on
   * failure at any point everything either acquired is released again and the error rethrown.
   * Resolves with how long each phase took (ms), for diagnostics and the benchmark.
   */
  async bringUp(rec: VmRecord, how: StartHow = BOOT): Promise<Record<string, number>> {
    const phases: Record<string, number> = {};
    await withRollback(async (cleanup) => {
      await this.#prepareTarget(rec, how, cleanup, phases);
      await this.#start(rec, how, cleanup, phases);
    }).catch((err: unknown) => {
      delete rec.net;
      throw err instanceof EngineError
        ? err
        : new EngineError(ErrorCode.RuntimeFailed, `VM ${rec.id} failed to boot: ${(err as Error).message}`, { cause: err });
    });
    return phases;
  }

  /**
   * Everything the sandbox starts on: disk and rootfs mounted, network namespace, address and
   * firewall, guest files and the bundle's spec. Records `mounts`, `network` and `spec` in `phases`.
   */
  async #prepareTarget(rec: VmRecord, how: StartHow, cleanup: Cleanup, phases: Record<string, number>): Promise<void> {
    const p = this.paths.vm(rec.id);
    const runtime = this.runtimes[rec.runtime];
    const ns = netnsName(rec.id);
    const hostIf = hostIfName(rec.id);
    // Mounts and network share nothing, so they run side by side; each registers its own
    // undos, and a failure waits for the other half, so the rollback sees everything acquired.
    const mounts = timed(async () => {
      await mountDisk(p);
      cleanup.add("unmount disk", () => unmountDisk(p));
      await mountRootfs(p, this.lowerDirs(rec));
      cleanup.add("unmount rootfs", () => unmountRootfs(p));
      await mountGuestFiles(p);
      cleanup.add("unmount guest files", () => unmountGuestFiles(p));
    });
    const network = timed(async () => {
      const lease = await claim(this.opts.subnet, { dataDir: this.opts.dataDir, vmId: rec.id });
      cleanup.add("release address", () => release(lease.slot, rec.id));
      rec.net = lease;
      await this.records.saveVm(rec); // recovery must know the lease even if we crash right now
      await createNetns(ns, hostIf, lease, this.opts.packageCaches);
      cleanup.add("delete netns", () => deleteNetns(ns, hostIf));
      cleanup.add("forget firewall", () => forgetVm(hostIf));
      await this.applyFirewall(rec, lease);
      return lease;
    });
    const [m, n] = await Promise.allSettled([mounts, network]);
    if (m.status === "rejected") throw m.reason;
    if (n.status === "rejected") throw n.reason;
    // Each half's own duration; together they took the longer of the two.
    phases.mounts = m.value.ms;
    phases.network = n.value.ms;
    const phase = lapsInto(phases);
    const lease = n.value.result;

    rec.caches = how.kind === "restore" ? how.caches : this.opts.packageCaches ? await answeringCaches() : [];
    const cacheFiles = await this.writeGuestFiles(rec, lease, rec.caches.map(guestCacheFile));
    rec.agentBundle = how.kind === "restore" ? how.agentBundle : await resolveBundle(this.opts.agentBundleDir);
    if (runtime.network !== undefined) rec.network = runtime.network;
    const spec = buildSpec({
      hostname: rec.id,
      rootfs: p.rootfs,
      agentBundleDir: rec.agentBundle,
      agentSnapshot: await pathExists(`${rec.agentBundle}/${AGENT_SNAPSHOT}`),
      runDir: p.run,
      etcDir: p.etc,
      etcFiles: cacheFiles,
      limits: rec.limits,
      runtime: rec.runtime,
      ...(runtime.netnsInSpec ? { netnsPath: netnsPath(ns) } : {}),
    });
    await writeJsonAtomic(`${p.bundle}/config.json`, spec);
    phase("spec");
  }

  /** Runs or restores the prepared target and waits for its agent: phases `runtimeRun` or `runtimeRestore`, then `agentReady`. */
  async #start(rec: VmRecord, how: StartHow, cleanup: Cleanup, phases: Record<string, number>): Promise<void> {
    const phase = lapsInto(phases);
    const p = this.paths.vm(rec.id);
    const runtime = this.runtimes[rec.runtime];
    const ns = netnsPath(netnsName(rec.id));
    cleanup.add("destroy sandbox", () => runtime.destroy(rec.id));
    if (how.kind === "boot") {
      await runtime.run(rec.id, p.bundle, ns, p.log);
      phase("runtimeRun");
      await this.waitForAgent(rec.id);
    } else {
      await restoreVm(runtime, how.imageDir, { id: rec.id, bundleDir: p.bundle, runDir: p.run, netnsPath: ns, logFile: p.log }, how.gate);
      phase("runtimeRestore");
      // The UTS name is the source's (it lives in the checkpointed kernel); the agent is
      // waited for meanwhile, and the VM is handed out only once both are done (`hostname`
      // is that step's own time, inside `agentReady`).
      const [named, ready] = await Promise.allSettled([timed(() => runtime.setHostname(rec.id, rec.id)).then((t) => (phases.hostname = t.ms)), this.waitForAgent(rec.id)]);
      if (ready.status === "rejected") throw ready.reason;
      if (named.status === "rejected") throw named.reason;
    }
    phase("agentReady");
  }

  /**
   * Sets the VM's firewall from its record: its own policy if it has one, else the engine's host
   * ports and egress switch. Idempotent; a policy replaces what was there in one transaction.
   */
  async applyFirewall(rec: VmRecord, lease: Lease): Promise<void> {
    const hostIf = hostIfName(rec.id);
    if (rec.firewall) await applyVmPolicy(hostIf, lease.hostIp, rec.firewall, hostIfName);
    else await allowVm(hostIf, this.opts.allowedHostPorts, rec.egress === "internet");
    await mapHostAlias(hostIf, lease.hostIp);
    // Apart from the policy or egress switch: the caches fetch only public registry files.
    if (this.opts.packageCaches) await allowPackageCaches(hostIf, lease.hostIp);
  }

  /** A running VM's new firewall: the ruleset (one transaction), then its resolv.conf to match. */
  async changeFirewall(rec: VmRecord): Promise<void> {
    if (!rec.net) throw new EngineError(ErrorCode.InvalidState, `VM ${rec.id} has no network`);
    await this.applyFirewall(rec, rec.net);
    await this.writeResolvConf(rec);
  }

  /** Stops the sandbox and releases everything but the disk image. Idempotent. */
  async tearDown(rec: VmRecord): Promise<void> {
    const p = this.paths.vm(rec.id);
    const hostIf = hostIfName(rec.id);
    await this.runtimes[rec.runtime].destroy(rec.id);
    await forgetVm(hostIf);
    await deleteNetns(netnsName(rec.id), hostIf);
    const slots = new Set<number>(rec.net ? [rec.net.slot] : []);
    for (const c of await claimsOf(this.opts.dataDir)) if (c.vmId === rec.id) slots.add(c.slot);
    for (const slot of slots) await release(slot, rec.id);
    delete rec.net;
    await unmountGuestFiles(p);
    await unmountRootfs(p);
    await unmountDisk(p);
  }

  /**
   * Removes every file of the VM. Call after {@link tearDown}; whatever is still mounted in its
   * dir (a record-less VM that a crash left half-made) is unmounted first.
   */
  async removeFiles(id: string): Promise<void> {
    const p = this.paths.vm(id);
    await unmountGuestFiles(p);
    await unmountRootfs(p);
    await unmountDisk(p);
    await fs.rm(p.dir, { recursive: true, force: true });
    this.records.forgetVm(id);
  }

  /**
   * Until the agent answers `hello`: tried again as soon as its run dir changes (the socket
   * appears when it listens), at most every {@link AGENT_RETRY_MIN_MS}, and every
   * {@link AGENT_RETRY_MS} in any case.
   */
  async waitForAgent(id: string, timeoutMs: number = this.opts.bootTimeoutMs): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const client = this.agent(id);
    const wake = new DirWake(this.paths.vm(id).run, AGENT_RETRY_MIN_MS);
    let last: unknown;
    try {
      while (Date.now() < deadline) {
        try {
          await client.hello(AGENT_HELLO_TIMEOUT_MS);
          return;
        } catch (err) {
          // An agent that answers, but not in this host's protocol, will not get better by waiting.
          if (isEngineError(err, ErrorCode.AgentProtocolError)) throw err;
          last = err;
          await wake.next(AGENT_RETRY_MS);
        }
      }
    } finally {
      wake.close();
    }
    const log = await fs.readFile(this.paths.vm(id).log, "utf8").catch(() => "");
    throw new EngineError(
      ErrorCode.AgentUnavailable,
      `VM ${id}: the guest agent did not answer within ${timeoutMs} ms (${(last as Error)?.message ?? "no attempt"}). Runtime log tail:\n${log.split("\n").slice(-10).join("\n")}`,
    );
  }

  /**
   * /etc/hosts, resolv.conf and hostname are host-managed files bind-mounted into the VM, never
   * written into its rootfs by the host: the host must not follow links a VM planted there. They
   * live on the VM's guest-files tmpfs, which caps what the VM can write into them. So do the
   * apt and npm configs of `cacheFiles`, returned for the spec to mount.
   */
  private async writeGuestFiles(rec: VmRecord, lease: Lease, cacheFiles: GuestCacheFile[]): Promise<GuestCacheFile[]> {
    const p = this.paths.vm(rec.id);
    await fs.rm(p.socket, { force: true });
    const hosts = [
      "127.0.0.1\tlocalhost",
      "::1\tlocalhost ip6-localhost ip6-loopback",
      `${lease.guestIp}\t${rec.id}`,
      `${HOST_ALIAS_IPV4}\thost.capsule.internal`,
      "",
    ].join("\n");
    await fs.writeFile(`${p.etc}/hosts`, hosts);
    await fs.writeFile(`${p.etc}/hostname`, `${rec.id}\n`);
    await this.writeResolvConf(rec);
    for (const f of cacheFiles) await fs.writeFile(`${p.etc}/${f.file}`, f.content);
    return cacheFiles;
  }

  /** The host's resolvers for a VM that reaches the internet; none for one that does not. */
  private async writeResolvConf(rec: VmRecord): Promise<void> {
    const internet = rec.firewall ? reachesPublic(rec.firewall) : rec.egress === "internet";
    await fs.writeFile(`${this.paths.vm(rec.id).etc}/resolv.conf`, internet ? await upstreamResolvers() : "# no egress: no DNS\n");
  }
}


/** Each call books the time since the previous one (or since this was made) into `phases` under its name. */
function lapsInto(phases: Record<string, number>): (name: string) => void {
  let mark = performance.now();
  return (name) => {
    const now = performance.now();
    phases[name] = (phases[name] ?? 0) + (now - mark);
    mark = now;
  };
}

/** Runs `body` and reports how long it took (ms). */
async function timed<T>(body: () => Promise<T>): Promise<{ result: T; ms: number }> {
  const t0 = performance.now();
  const result = await body();
  return { result, ms: performance.now() - t0 };
}

/**
 * The bundle dir holds versions and a `current` link (setup replaces the link, never a version a
 * running VM has mounted); a flat bundle without `current` is used as is.
 */
export async function resolveBundle(dir: string): Promise<string> {
  return fs.realpath(`${dir}/current`).catch(() => dir);
}

/** The host's non-loopback nameservers (a loopback stub resolver is unreachable from a VM). */
async function upstreamResolvers(): Promise<string> {
  for (const file of ["/run/systemd/resolve/resolv.conf", "/etc/resolv.conf"]) {
    const text = await fs.readFile(file, "utf8").catch(() => "");
    const servers = [...text.matchAll(/^nameserver\s+(\S+)/gm)].map((m) => m[1] ?? "").filter((s) => s && !s.startsWith("127.") && s !== "::1");
    if (servers.length > 0) return servers.map((s) => `nameserver ${s}`).join("\n") + "\n";
  }
  return "nameserver 1.1.1.1\n";
}

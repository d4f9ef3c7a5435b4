import fs from "node:fs/promises";
import type { ResolvedOptions, RuntimeName } from "./config.js";
import type { ImageStore, LayerStore } from "./disk/layer-store.js";
import { EngineError, ErrorCode, isEngineError } from "./errors.js";
import { findProcs, waitGone } from "./host/procs.js";
import { writeMarker } from "./memory/checkpoint.js";
import { claimsOf, release } from "./net/ipam.js";
import { mapHostAlias } from "./net/firewall.js";
import { deleteNetns } from "./net/netns.js";
import { hostIfName, netnsName, type Paths } from "./paths.js";
import type { Runtime } from "./runtime/types.js";
import type { Records, VmRecord } from "./state/records.js";
import type { VmHost } from "./vm-host.js";

/**
 * How long one VM may take, at start-up, to show that its sandbox runs and its agent answers
 * `version` correctly. A VM that errs, answers garbage or stays silent past this is stopped and
 * marked `lost`; recovery goes on with the next VM. A VM can therefore delay `Engine.open` by
 * at most this much (probes run {@link PROBE_CONCURRENCY} at a time), and never stop it.
 */
export const RECOVERY_PROBE_BUDGET_MS = 5_000;

/** Probes in flight at once during recovery (each is one `runsc state` and one socket call). */
const PROBE_CONCURRENCY = 8;

/** How long orphaned runtime commands of a crashed engine get to finish before they are killed. */
const ORPHAN_COMMAND_GRACE_MS = 30_000;

/** What one `Engine.open` found and did, VM by VM. */
export interface RecoveryReport {
  /** Running VMs whose agent answered: adopted as they are. */
  adopted: string[];
  /** Paused VMs whose sandbox the runtime still holds paused: kept paused, memory and all. */
  paused: string[];
  /** Running VMs whose agent was of an older protocol (booted before an upgrade): restarted with the current bundle. */
  restarted: string[];
  /** VMs brought down to `stopped`, disk intact (their sandbox was gone, or a crash caught them mid-start or mid-stop). */
  stopped: string[];
  /** VMs stopped and marked `lost`, with the reason stored in their record. */
  lost: Array<{ id: string; reason: string }>;
  /** Half-created or half-deleted VMs, torn down and removed. */
  removed: string[];
  /** VMs recovery could not handle (clean-up failed, record unreadable); left as they are for the next open. */
  failed: Array<{ id: string; reason: string }>;
  /** Why unused layers or memory images were not collected this time, if they were not. */
  layersNotCollected?: string;
  durationMs: number;
}

export interface RecoveryDeps {
  options: ResolvedOptions;
  paths: Paths;
  records: Records;
  host: VmHost;
  runtimes: Record<RuntimeName, Runtime>;
  layers: LayerStore;
  images: ImageStore;
  /** Overrides {@link RECOVERY_PROBE_BUDGET_MS}. */
  probeBudgetMs?: number;
}

/**
 * Makes the data dir consistent after any crash: VMs that were running and still answer are
 * adopted; paused VMs whose sandbox is still paused stay paused; VMs whose guest misbehaves are
 * stopped and marked `lost`; half-made or half-deleted VMs are torn down and removed; anything
 * else that was up is brought down to `stopped` with its disk intact. Runtime containers,
 * processes, network claims, half-written layers, layers no record names and temp files that no
 * record explains are removed. Nothing one VM does can make this throw or hang: each VM's probe
 * has a deadline and each VM's errors stay with that VM.
 */
export async function recover(deps: RecoveryDeps): Promise<RecoveryReport> {
  const t0 = performance.now();
  const { paths, records, host, runtimes } = deps;
  const report: RecoveryReport = { adopted: [], paused: [], restarted: [], stopped: [], lost: [], removed: [], failed: [], durationMs: 0 };
  await fs.mkdir(paths.vmsDir, { recursive: true, mode: 0o700 });
  await settleOrphanCommands(paths);
  await records.removeTempFiles();

  const recs: VmRecord[] = [];
  const known = new Set<string>();
  for (const id of await records.vmIds()) {
    let rec: VmRecord | undefined;
    try {
      rec = await records.readVm(id);
    } catch (err) {
      // Records are written atomically, so this is damage, not a crash: keep the VM's files and
      // whatever runs for it, and say so, rather than guess.
      report.failed.push({ id, reason: `its record is unreadable: ${(err as Error)?.message ?? String(err)}` });
      known.add(id);
      continue;
    }
    if (!rec) await host.removeFiles(id); // no record: the crash came before its first write, so nothing of it exists yet
    else if (rec.id !== id) {
      report.failed.push({ id, reason: `its record names another VM (${String(rec.id)})` });
      known.add(id);
    } else recs.push(rec);
  }
  const probes = await probeAll(
    recs.filter((r) => r.state === "running"),
    deps,
  );

  for (const rec of recs) {
    await recoverVm(rec, probes.get(rec.id), deps, report);
    if (await fs.access(paths.vm(rec.id).dir).then(() => true, () => false)) known.add(rec.id);
  }

  for (const runtime of Object.values(runtimes)) {
    for (const cid of await runtime.list()) if (!known.has(cid)) await runtime.destroy(cid).catch(() => undefined);
  }
  // Sandbox processes the runtime has no state for (a `run` killed half-way) are killed outright.
  for (const p of await findProcs(`${paths.vmsDir}/`)) {
    const bundle = p.argv.find((a) => a.startsWith("--bundle="));
    const id = bundle ? /\/vms\/([a-z0-9]+)\/bundle/.exec(bundle)?.[1] : undefined;
    if (id && !known.has(id)) killQuietly(p.pid);
  }
  for (const c of await claimsOf(deps.options.dataDir)) {
    if (known.has(c.vmId)) continue;
    await deleteNetns(netnsName(c.vmId), hostIfName(c.vmId));
    await release(c.slot, c.vmId);
  }
  // GC refuses to run while any record is unreadable (a layer might be in use); open anyway.
  // Memory images likewise: a checkpoint a crash cut short left a partial one.
  for (const store of [deps.layers, deps.images]) {
    await store.gc().catch((err: unknown) => {
      report.layersNotCollected = (err as Error)?.message ?? String(err);
    });
  }
  report.durationMs = Math.round(performance.now() - t0);
  return report;
}

type ProbeResult = { ok: true; alive: boolean } | { ok: true; outdated: true } | { ok: false; reason: string };

/** Probes running VMs a few at a time; every probe settles within the budget. */
async function probeAll(recs: VmRecord[], deps: RecoveryDeps): Promise<Map<string, ProbeResult>> {
  const out = new Map<string, ProbeResult>();
  const queue = [...recs];
  const worker = async () => {
    for (let rec = queue.shift(); rec; rec = queue.shift()) {
      const r: ProbeResult = await probe(rec, deps).then(
        (alive) => ({ ok: true as const, alive }),
        (err: unknown) =>
          isEngineError(err) && err.code === ErrorCode.AgentOutdated
            ? { ok: true as const, outdated: true as const }
            : { ok: false as const, reason: (err as Error)?.message ?? String(err) },
      );
      out.set(rec.id, r);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PROBE_CONCURRENCY, recs.length) }, worker));
  return out;
}

/**
 * Resolves true if the sandbox runs and its agent answers `version` with our protocol, false if
 * the sandbox is simply not running (a host reboot, say). Rejects on anything else: an agent
 * that errs, answers the wrong thing, or does not answer within the budget.
 */
async function probe(rec: VmRecord, deps: RecoveryDeps): Promise<boolean> {
  const budget = deps.probeBudgetMs ?? RECOVERY_PROBE_BUDGET_MS;
  const deadline = Date.now() + budget;
  const left = () => Math.max(1, deadline - Date.now());
  // A crash during a snapshot's copy can leave the sandbox frozen in its cgroup, where it answers
  // neither the runtime's `state` nor its agent: thawed first. Nothing else leaves a VM frozen.
  await withDeadline(deps.runtimes[rec.runtime].thaw(rec.id), left(), `the sandbox's cgroup could not be thawed within ${budget} ms`);
  const state = await withDeadline(deps.runtimes[rec.runtime].state(rec.id), left(), `the runtime did not report the sandbox's state within ${budget} ms`);
  // Paused with a `running` record: a crash between a pause and its record, or during a
  // snapshot's copy. Resumed, it answers like any other.
  if (state === "paused") await withDeadline(deps.runtimes[rec.runtime].resume(rec.id), left(), `the sandbox could not be resumed within ${budget} ms`);
  else if (state !== "running") return false;
  const woken = await wakeDeafAgent(rec, deps, left());
  // hello() checks the reply's shape and protocol version; anything else is a coded error.
  for (;;) {
    try {
      await withDeadline(deps.host.agent(rec.id).hello(left()), left(), `the agent did not answer version within ${budget} ms`);
      return true;
    } catch (err) {
      // A woken agent's socket file appears at its bind, a moment before it listens: a refused
      // connection then is that moment, asked again within the budget. Anything else stands.
      if (!woken || !refusedConnection(err) || Date.now() + DEAF_AGENT_POLL_MS >= deadline) throw err;
      await new Promise((r) => setTimeout(r, DEAF_AGENT_POLL_MS));
    }
  }
}

/** An AGENT_UNAVAILABLE whose cause is a refused (or not yet there) unix-socket connection. */
function refusedConnection(err: unknown): boolean {
  if (!isEngineError(err) || err.code !== ErrorCode.AgentUnavailable) return false;
  const code = ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code;
  return code === "ECONNREFUSED" || code === "ENOENT";
}

/**
 * A crash between a checkpoint's `ckpt.prepare` and its marker leaves the agent deaf (its socket
 * removed) until its own deaf limit, longer than the probe's budget: the marker wakes it now.
 * Then its socket is waited for, at most `withinMs`; resolves whether it had to wake it. A VM without a socket for another reason
 * (its agent died) is left to the probe; the marker it did not take is removed by the next
 * checkpoint before it asks the agent anything.
 */
async function wakeDeafAgent(rec: VmRecord, deps: RecoveryDeps, withinMs: number): Promise<boolean> {
  const p = deps.paths.vm(rec.id);
  if (await exists(p.socket)) return false;
  await writeMarker(p.run);
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline && !(await exists(p.socket))) await new Promise((r) => setTimeout(r, DEAF_AGENT_POLL_MS));
  return true;
}

/** How often recovery looks for a woken agent's socket. */
const DEAF_AGENT_POLL_MS = 5;

function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}

async function recoverVm(rec: VmRecord, probed: ProbeResult | undefined, deps: RecoveryDeps, report: RecoveryReport): Promise<void> {
  const { host, records } = deps;
  try {
    switch (rec.state) {
      case "creating":
      case "deleting":
      case "deleted":
        await host.tearDown(rec);
        await host.removeFiles(rec.id);
        report.removed.push(rec.id);
        return;
      case "running":
        if (probed?.ok && "outdated" in probed) {
          // Booted before an upgrade: its processes go, its disk stays, and it comes back with
          // the current agent (a guest that only claims to be old gets a real agent the same way).
          await host.tearDown(rec);
          rec.state = "starting";
          await records.saveVm(rec);
          try {
            await host.bringUp(rec);
          } catch (err) {
            await markLost(rec, `at start-up recovery: restarting it with the current agent failed: ${(err as Error)?.message ?? String(err)}`, deps, report);
            return;
          }
          rec.state = "running";
          await records.saveVm(rec);
          report.restarted.push(rec.id);
          return;
        }
        if (probed?.ok && probed.alive) {
          // Its ruleset is the kernel's and outlived the engine, unless a ruleset upgrade replaced
          // the table since: a policy VM's chains go with it (applied again from the record);
          // shared-set elements are kept, but an upgrade from before the host alias has no alias
          // element, added here (a no-op when it is there).
          if (rec.net && rec.firewall) await host.applyFirewall(rec, rec.net);
          else if (rec.net) await mapHostAlias(hostIfName(rec.id), rec.net.hostIp);
          report.adopted.push(rec.id);
          return;
        }
        if (probed && !probed.ok) {
          await markLost(rec, `at start-up recovery: ${probed.reason}`, deps, report);
          return;
        }
        await host.tearDown(rec);
        rec.state = "stopped";
        await records.saveVm(rec);
        report.stopped.push(rec.id);
        return;
      case "paused":
        await recoverPaused(rec, deps, report);
        return;
      case "starting":
      case "stopping":
      case "stopped":
        await host.tearDown(rec);
        if (rec.state !== "stopped") {
          rec.state = "stopped";
          await records.saveVm(rec);
          report.stopped.push(rec.id);
        }
        return;
      case "lost":
        await host.tearDown(rec);
        return;
    }
  } catch (err) {
    const reason = `recovery could not clean up: ${(err as Error)?.message ?? String(err)}`;
    if (rec.state === "creating" || rec.state === "deleting" || rec.state === "deleted") {
      report.failed.push({ id: rec.id, reason });
      return;
    }
    await markLost(rec, reason, deps, report).catch((e: unknown) => {
      report.failed.push({ id: rec.id, reason: `${reason}; marking it lost failed too: ${(e as Error)?.message ?? String(e)}` });
    });
  }
}

/**
 * A paused VM stays paused if its sandbox still is (an engine restart does not touch it). One the
 * runtime runs was resumed by a start the crash cut short, before its record was written: the
 * record is what its owner was last told, so it is paused again. One whose sandbox is gone (a
 * host reboot) lost its memory: it is stopped, disk intact.
 */
async function recoverPaused(rec: VmRecord, deps: RecoveryDeps, report: RecoveryReport): Promise<void> {
  const runtime = deps.runtimes[rec.runtime];
  const budget = deps.probeBudgetMs ?? RECOVERY_PROBE_BUDGET_MS;
  const state = await withDeadline(runtime.state(rec.id), budget, `the runtime did not report the sandbox's state within ${budget} ms`);
  if (state === "running") await withDeadline(runtime.pause(rec.id), budget, `the sandbox could not be paused again within ${budget} ms`);
  if (state === "running" || state === "paused") {
    // A crash mid-checkpoint of a paused VM may have left its agent deaf: it listens again once resumed.
    if (!(await exists(deps.paths.vm(rec.id).socket))) await writeMarker(deps.paths.vm(rec.id).run);
    report.paused.push(rec.id);
    return;
  }
  await deps.host.tearDown(rec);
  rec.state = "stopped";
  await deps.records.saveVm(rec);
  report.stopped.push(rec.id);
}

/** Stops the VM (best effort: the reason says if that failed) and records it as `lost`. */
async function markLost(rec: VmRecord, reason: string, deps: RecoveryDeps, report: RecoveryReport): Promise<void> {
  let why = reason;
  await deps.host.tearDown(rec).catch((err: unknown) => {
    why += `; stopping it failed: ${(err as Error)?.message ?? String(err)}`;
  });
  rec.state = "lost";
  rec.lostReason = why.slice(0, 1000);
  await deps.records.saveVm(rec);
  report.lost.push({ id: rec.id, reason: rec.lostReason });
}

function withDeadline<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new EngineError(ErrorCode.AgentUnavailable, message)), ms);
  });
  p.catch(() => undefined); // it may settle after the deadline; nobody waits for it then
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A crashed engine leaves its runtime commands (`runsc run`, `checkpoint`, `restore`, `delete`, …)
 * running as orphans, and its copies into layers and memory images (`cp`, `sync`); one that
 * finishes after recovery looked would leave a sandbox nobody knows, or write into a partial
 * directory the collection below is removing. Wait for them (they end within seconds), and kill
 * those that do not.
 */
async function settleOrphanCommands(paths: Paths): Promise<void> {
  // Only processes in our own PID namespace: a runc guest's processes are host processes too,
  // and one that put `--root=…` in its argv must not make recovery wait for it.
  const ourPidNs = await fs.readlink("/proc/self/ns/pid");
  const ours = async (pid: number) => (await fs.readlink(`/proc/${pid}/ns/pid`).catch(() => "")) === ourPidNs;
  const cmds = new Set<number>();
  for (const p of await findProcs(`--root=${paths.runtimeRoot}/`)) {
    if (!p.argv.some((a) => a === "boot" || a === "gofer") && (await ours(p.pid))) cmds.add(p.pid);
  }
  for (const dir of [paths.layersDir, paths.memoryDir]) {
    for (const p of await findProcs(`${dir}/`)) if (p.pid !== process.pid && (await ours(p.pid))) cmds.add(p.pid);
  }
  const left = await waitGone([...cmds], ORPHAN_COMMAND_GRACE_MS);
  for (const pid of left) killQuietly(pid);
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    /* already gone */
  }
}

/**
 * The warm pool: VMs booted ahead of the creates that will want them, so that a create is an
 * assignment (an owner label changes hands) instead of a boot.
 *
 * - Kinds. A pooled VM is booted for one kind of create: (snapshot or base image, limits,
 *   egress). The default kind (no snapshot, the default limits) is kept at `size`. Any other kind
 *   a create asks for becomes hot and is kept at `hotSize` until `hotTtlSeconds` pass without a
 *   create of it; at most `hotKinds` are hot, the least recently wanted goes first.
 * - Fresh. A pooled VM goes to one create, once, and nobody ran anything in it before but the
 *   pool's readiness check (`true` as root, which writes nothing): it was booted for that purpose,
 *   with its own boot id, writable layer, address and hostname (its id). It is never given back
 *   to the pool.
 * - Ready. A booted VM joins the pool only once a command has run in it: that proves it can serve
 *   the create's first exec, and the first exec in a VM (the shell and libc loaded by gVisor for
 *   the first time, the agent's exec path run for the first time) costs 20-30 ms more than later
 *   ones on a 2-core host, which the check pays instead of the tenant.
 * - Frozen. A ready VM waits frozen in its freezer cgroup (Engine.freezeVm, ~1 ms each way):
 *   gVisor's threads spin even in an idle guest, and 50 idle warm VMs took 0.8-1.2 of a 2-core
 *   host's cores from the VMs just claimed. `take` thaws it before anyone talks to it; one that
 *   does not thaw is deleted and the next is tried. A delete thaws first (the engine does), and
 *   the warm VMs a server leaves behind are thawed by the next engine's recovery and frozen
 *   again by `adopt`. Where the runtime has no freezer the VMs simply stay running.
 * - Owner. The engine writes the owner label `pool:<kind>` into the VM's record before the VM
 *   exists; a claim changes it to the create's intent label, durably (Engine.claimVm). After a
 *   crash, a VM still labelled `pool:` was never handed out: the next pool adopts it if it still
 *   wants that kind and deletes it if not.
 * - Budget. Pool VMs count against the host's capacity like any VM (a host admission reserves
 *   before each boot), never against an account. The pool boots only while the sum of its VMs'
 *   memory limits stays within `maxMemoryMb` and the host's MemAvailable stays above
 *   `minHostAvailableMb`; under that pressure it stops refilling and deletes warm VMs one per
 *   tick. A create refused for host capacity first takes capacity back from the pool (`yieldFor`).
 * - Never in the way. A create that finds no warm VM of its kind boots one itself, at once: it
 *   never waits for a refill. Refills run in the background, `bootConcurrency` at a time.
 * @module
 */
import fs from "node:fs";
import type { Egress, Engine, VmInfo, VmLimits } from "@capsule/engine";
import type { Logger } from "pino";
import type { QuotaTicket } from "../quotas.js";

export interface PoolConfig {
  /** Warm VMs of the default kind (no snapshot, default limits). 0 turns the pool off. */
  size: number;
  /** Warm VMs of each hot kind (a snapshot or sizing a create asked for recently). */
  hotSize: number;
  /** Most hot kinds kept at once. */
  hotKinds: number;
  /** A hot kind nobody created for this long loses its warm VMs. */
  hotTtlSeconds: number;
  /** Most memory, MiB, the pool's VMs may have as limits, summed. */
  maxMemoryMb: number;
  /** VMs the pool boots at once. */
  bootConcurrency: number;
  /** Below this much MemAvailable on the host, MiB, the pool stops refilling and shrinks. */
  minHostAvailableMb: number;
}

export const DEFAULT_POOL: PoolConfig = Object.freeze({
  size: 2,
  hotSize: 1,
  hotKinds: 4,
  hotTtlSeconds: 600,
  maxMemoryMb: 16 * 1024,
  bootConcurrency: 1,
  minHostAvailableMb: 1024,
});

/** How often the pool looks at its targets, hot kinds' expiry and memory pressure. */
const TICK_MS = 1000;
/**
 * When refills run. A boot takes a small host's cores for half a second, and the VMs just claimed
 * are about to run their first commands, so a refill waits for a quiet moment:
 * - a kind that still has more than LOW_WATER of its target warm refills once no VM was claimed
 *   for REFILL_QUIET_MS and no command runs, or REFILL_QUIET_MAX_MS after the last claim at the
 *   latest (a burst or a steady trickle of creates keeps its warm VMs to itself);
 * - a kind at or below LOW_WATER (a pool about to run dry) refills REFILL_DELAY_MS after the last
 *   claim, and while commands run waits at most REFILL_MAX_DEFER_MS after it.
 */
const REFILL_DELAY_MS = 100;
const REFILL_MAX_DEFER_MS = 2000;
const REFILL_QUIET_MS = 1000;
const REFILL_QUIET_MAX_MS = 5000;
/** The share of a kind's target at or below which it refills without waiting for quiet. */
const LOW_WATER = 0.25;
/** The readiness check's command and its bound. */
const READY_CHECK = "true";
const READY_CHECK_TIMEOUT_MS = 10_000;
/** After a failed boot, that kind is left alone this long (a broken snapshot must not spin). */
const BOOT_BACKOFF_MS = 10_000;

/** What a create asks for, as far as a pooled VM can satisfy it. */
export interface PoolKind {
  snapshotId?: string;
  limits: VmLimits;
  egress: Egress;
}

export const POOL_OWNER_PREFIX = "pool:";

/** One printable, space-free string per kind: the map key and the owner label's tail. */
export function kindKey(k: PoolKind): string {
  const l = k.limits;
  return `${k.snapshotId ?? "base"}:${l.memoryMb}:${l.cpus}:${l.pids}:${l.diskMb}:${k.egress}`;
}

export function isPoolOwner(owner: string | undefined): boolean {
  return owner?.startsWith(POOL_OWNER_PREFIX) === true;
}

function kindOf(vm: VmInfo): PoolKind {
  return { ...(vm.snapshotId !== undefined ? { snapshotId: vm.snapshotId } : {}), limits: vm.limits, egress: vm.egress };
}

interface KindState {
  kind: PoolKind;
  /** Warm VMs, oldest first. */
  ready: VmInfo[];
  booting: number;
  /** When a create last asked for this kind (hot kinds only). */
  wantedAt: number;
  backoffUntil: number;
}

export interface PoolDeps {
  engine: Engine;
  log: Logger;
  /** The default kind: default limits and the server's egress. */
  defaultKind: () => PoolKind;
  /** Reserves host capacity for one pool VM (throws when there is none). */
  admitHost: (limits: VmLimits) => Promise<QuotaTicket>;
  /** Whether tenants' commands are running now (refills wait for a quiet moment, within bounds). */
  busy?: () => boolean;
  /** Test seam: awaited before each pool boot, so a test can hold the refill. */
  bootGate?: () => Promise<void>;
  /** The host's MemAvailable, MiB (default: /proc/meminfo). */
  hostAvailableMb?: () => number;
}

export interface PoolStats {
  ready: number;
  booting: number;
  target: number;
  memoryMb: number;
  hits: number;
  misses: number;
  kinds: Array<{ kind: string; ready: number; booting: number; target: number }>;
}

export class WarmPool {
  readonly #kinds = new Map<string, KindState>();
  readonly #deleting = new Set<Promise<void>>();
  #timer: NodeJS.Timeout | undefined;
  #delayed: NodeJS.Timeout | undefined;
  #lastTake = 0;
  #closed = false;
  #hits = 0;
  #misses = 0;

  constructor(
    readonly config: PoolConfig,
    private readonly deps: PoolDeps,
  ) {}

  get enabled(): boolean {
    return this.config.size > 0 || this.config.hotSize > 0;
  }

  /**
   * Takes over the VMs an earlier server left labelled `pool:` (never handed out): running ones
   * of the default kind are warm again, frozen anew (recovery thawed them to probe their agents);
   * every other one is deleted.
   */
  async adopt(vms: VmInfo[]): Promise<void> {
    const def = this.#defaultKey();
    const deletes: Array<Promise<void>> = [];
    for (const vm of vms) {
      if (this.config.size > 0 && vm.state === "running" && vm.owner === POOL_OWNER_PREFIX + def && kindKey(kindOf(vm)) === def) {
        this.#state(kindOf(vm)).ready.push(vm);
        deletes.push(this.#freeze(vm));
        continue;
      }
      this.deps.log.info({ vmId: vm.id, owner: vm.owner, state: vm.state }, "pool: deleting a VM an earlier pool left that this one does not want");
      deletes.push(this.#delete(vm.id));
    }
    await Promise.all(deletes);
  }

  start(): void {
    if (!this.enabled || this.#timer) return;
    this.#timer = setInterval(() => this.#pump(), TICK_MS);
    this.#timer.unref();
    this.#pump();
  }

  /**
   * A warm VM of this kind, taken out of the pool (synchronously, so two creates never get the
   * same one) and thawed, or undefined. A VM that does not thaw is deleted and the next one is
   * tried. Either way the kind is wanted: a hot kind's clock restarts, and the refill starts in
   * the background.
   */
  async take(kind: PoolKind): Promise<VmInfo | undefined> {
    if (!this.enabled || this.#closed) return undefined;
    const key = kindKey(kind);
    if (key !== this.#defaultKey() && this.config.hotSize > 0) this.#wanted(kind);
    this.#lastTake = Date.now();
    this.#pumpLater(REFILL_DELAY_MS);
    for (let vm = this.#kinds.get(key)?.ready.shift(); vm; vm = this.#kinds.get(key)?.ready.shift()) {
      try {
        await this.deps.engine.thawVm(vm.id);
        this.#hits++;
        return vm;
      } catch (err) {
        this.deps.log.warn({ err, vmId: vm.id }, "pool: a warm VM could not be thawed; deleting it");
        void this.#delete(vm.id);
      }
    }
    this.#misses++;
    return undefined;
  }

  /**
   * A VM `take` gave out whose create was refused before the claim (an account cap): it is still
   * fresh, nobody ran anything in it, so it is warm (and frozen) again.
   */
  putBack(vm: VmInfo): void {
    this.#hits--;
    const st = this.#kinds.get(kindKey(kindOf(vm)));
    if (st && !this.#closed) {
      st.ready.unshift(vm);
      void this.#freeze(vm);
    } else void this.#delete(vm.id);
  }

  /** A VM `take` gave out that could not be claimed (it stopped, or broke): deleted. */
  discard(vm: VmInfo): void {
    void this.#delete(vm.id);
  }

  /** The owner label of a warm VM; what a claim must find in its record. */
  ownerOf(vm: VmInfo): string {
    return POOL_OWNER_PREFIX + kindKey(kindOf(vm));
  }

  /**
   * Gives back host capacity for a create the host refused: deletes warm VMs (other kinds first,
   * the oldest first) until `memoryMb` and `cpus` are freed or the pool is empty. Resolves, once
   * the engine no longer counts them, to whether anything was freed.
   */
  async yieldFor(kind: PoolKind, memoryMb: number, cpus: number): Promise<boolean> {
    const keep = kindKey(kind);
    const order = [...this.#kinds.entries()].sort(([a], [b]) => (a === keep ? 1 : 0) - (b === keep ? 1 : 0));
    let mem = 0;
    let cpu = 0;
    const deletes: Array<Promise<void>> = [];
    for (const [, st] of order) {
      while (st.ready.length > 0 && (mem < memoryMb || cpu < cpus)) {
        const vm = st.ready.shift() as VmInfo;
        mem += vm.limits.memoryMb;
        cpu += vm.limits.cpus;
        deletes.push(this.#delete(vm.id));
      }
    }
    await Promise.all(deletes);
    if (mem > 0) this.deps.log.info({ memoryMb: mem, cpus: cpu }, "pool: gave host capacity back to a create");
    return mem > 0 || cpu > 0;
  }

  /** A snapshot is gone: its warm VMs go too, and nothing is booted from it any more. */
  dropSnapshot(snapshotId: string): void {
    for (const [key, st] of this.#kinds) {
      if (st.kind.snapshotId !== snapshotId) continue;
      for (const vm of st.ready.splice(0)) void this.#delete(vm.id);
      st.wantedAt = 0;
      if (st.booting === 0) this.#kinds.delete(key);
    }
  }

  stats(): PoolStats {
    const kinds: PoolStats["kinds"] = [];
    let memoryMb = 0;
    for (const [key, st] of this.#kinds) {
      kinds.push({ kind: key, ready: st.ready.length, booting: st.booting, target: this.#target(key, st) });
      memoryMb += (st.ready.length + st.booting) * st.kind.limits.memoryMb;
    }
    const sum = (f: (k: PoolStats["kinds"][number]) => number) => kinds.reduce((n, k) => n + f(k), 0);
    return { ready: sum((k) => k.ready), booting: sum((k) => k.booting), target: sum((k) => k.target), memoryMb, hits: this.#hits, misses: this.#misses, kinds };
  }

  /**
   * Stops refilling and waits for the boots and deletes in flight. Warm VMs stay, labelled
   * `pool:` and frozen, for the next server to adopt.
   */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    clearTimeout(this.#delayed);
    this.#timer = undefined;
    while ([...this.#kinds.values()].some((s) => s.booting > 0) || this.#deleting.size > 0) {
      await Promise.allSettled([...this.#deleting]);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  // ---------------------------------------------------------------- internals

  #defaultKey(): string {
    return kindKey(this.deps.defaultKind());
  }

  #state(kind: PoolKind): KindState {
    const key = kindKey(kind);
    let st = this.#kinds.get(key);
    if (!st) {
      st = { kind, ready: [], booting: 0, wantedAt: 0, backoffUntil: 0 };
      this.#kinds.set(key, st);
    }
    return st;
  }

  #wanted(kind: PoolKind): void {
    this.#state(kind).wantedAt = Date.now();
    // Over the hot-kind cap: the least recently wanted kinds lose their warm VMs.
    const def = this.#defaultKey();
    const hot = [...this.#kinds.entries()].filter(([k, s]) => k !== def && s.wantedAt > 0).sort(([, a], [, b]) => b.wantedAt - a.wantedAt);
    for (const [, st] of hot.slice(this.config.hotKinds)) st.wantedAt = 0;
  }

  #target(key: string, st: KindState): number {
    if (key === this.#defaultKey()) return this.config.size;
    const hot = st.wantedAt > 0 && Date.now() - st.wantedAt < this.config.hotTtlSeconds * 1000;
    return hot ? this.config.hotSize : 0;
  }

  #hostAvailableMb(): number {
    if (this.deps.hostAvailableMb) return this.deps.hostAvailableMb();
    const m = /^MemAvailable:\s+(\d+) kB/m.exec(fs.readFileSync("/proc/meminfo", "utf8"));
    return m ? Number(m[1]) / 1024 : Number.POSITIVE_INFINITY;
  }

  #pumpLater(ms: number): void {
    if (this.#delayed || this.#closed) return;
    this.#delayed = setTimeout(() => {
      this.#delayed = undefined;
      this.#pump();
    }, ms);
    this.#delayed.unref();
  }

  /** Brings every kind toward its target: trims what is over, boots what is missing. */
  #pump(): void {
    if (this.#closed) return;
    const sinceTake = Date.now() - this.#lastTake;
    const busy = this.deps.busy?.() === true;
    const lowRefill = sinceTake >= REFILL_DELAY_MS && (!busy || sinceTake >= REFILL_MAX_DEFER_MS);
    const quietRefill = sinceTake >= REFILL_QUIET_MAX_MS || (sinceTake >= REFILL_QUIET_MS && !busy);
    this.#state(this.deps.defaultKind());
    const pressure = this.#hostAvailableMb() < this.config.minHostAvailableMb;
    let booting = 0;
    let memoryMb = 0;
    for (const st of this.#kinds.values()) {
      booting += st.booting;
      memoryMb += (st.ready.length + st.booting) * st.kind.limits.memoryMb;
    }
    let trimmedForPressure = false;
    let refillLater = false;
    for (const [key, st] of this.#kinds) {
      const target = this.#target(key, st);
      // Over target (an expired hot kind, a smaller config): the newest extra VMs go.
      while (st.ready.length + st.booting > target && st.ready.length > 0) void this.#delete((st.ready.pop() as VmInfo).id);
      if (pressure && !trimmedForPressure && st.ready.length > 0) {
        trimmedForPressure = true;
        const vm = st.ready.pop() as VmInfo;
        this.deps.log.warn({ vmId: vm.id, minHostAvailableMb: this.config.minHostAvailableMb }, "pool: the host is short of memory; deleting a warm VM");
        void this.#delete(vm.id);
      }
      if (target === 0 && st.ready.length === 0 && st.booting === 0 && key !== this.#defaultKey()) {
        this.#kinds.delete(key);
        continue;
      }
      if (pressure) continue;
      const low = st.ready.length + st.booting <= Math.floor(target * LOW_WATER);
      if (!(low ? lowRefill : quietRefill)) {
        if (st.ready.length + st.booting < target) refillLater = true;
        continue;
      }
      while (st.ready.length + st.booting < target && booting < this.config.bootConcurrency && Date.now() >= st.backoffUntil) {
        if (memoryMb + st.kind.limits.memoryMb > this.config.maxMemoryMb) break;
        booting++;
        memoryMb += st.kind.limits.memoryMb;
        st.booting++;
        void this.#boot(st);
      }
    }
    // A refill held back for quiet is looked at again soon, not only at the next tick.
    if (refillLater) this.#pumpLater(Math.max(REFILL_DELAY_MS, REFILL_QUIET_MS - sinceTake));
  }

  async #boot(st: KindState): Promise<void> {
    const { engine, log } = this.deps;
    let ticket: QuotaTicket | undefined;
    try {
      if (this.deps.bootGate) await this.deps.bootGate();
      if (this.#closed) return;
      ticket = await this.deps.admitHost(st.kind.limits);
      const vm = await engine.createVm({
        ...(st.kind.snapshotId !== undefined ? { snapshotId: st.kind.snapshotId } : {}),
        limits: st.kind.limits,
        egress: st.kind.egress,
        owner: POOL_OWNER_PREFIX + kindKey(st.kind),
      });
      const check = await engine.guest.exec(vm.id, { command: READY_CHECK, timeoutMs: READY_CHECK_TIMEOUT_MS }).catch((err: unknown) => err as Error);
      if (check instanceof Error || check.exitCode !== 0) {
        void this.#delete(vm.id);
        throw new Error(`warm VM ${vm.id} failed its readiness check (${check instanceof Error ? check.message : `\`${READY_CHECK}\` exited ${check.exitCode}`})`);
      }
      await this.#freeze(vm);
      if (this.#kinds.get(kindKey(st.kind)) === st && !this.#closed) st.ready.push(vm);
      else void this.#delete(vm.id);
    } catch (err) {
      st.backoffUntil = Date.now() + BOOT_BACKOFF_MS;
      log.warn({ err, kind: kindKey(st.kind) }, "pool: could not boot a warm VM; retrying later");
    } finally {
      ticket?.release();
      st.booting--;
      if (!this.#closed) setImmediate(() => this.#pump());
    }
  }

  /**
   * Freezes a warm VM until `take` thaws it. One that cannot be frozen stays warm, running: it
   * costs the host CPU, not a create its VM.
   */
  async #freeze(vm: VmInfo): Promise<void> {
    await this.deps.engine.freezeVm(vm.id).catch((err: unknown) => this.deps.log.warn({ err, vmId: vm.id }, "pool: could not freeze a warm VM; it stays warm, running"));
  }

  /** Deletes a warm VM; resolves once the engine no longer counts it (its teardown goes on). */
  #delete(id: string): Promise<void> {
    const p = this.deps.engine.deleteVm(id).catch((err: unknown) => this.deps.log.error({ err, vmId: id }, "pool: could not delete a warm VM"));
    this.#deleting.add(p);
    void p.finally(() => this.#deleting.delete(p));
    return p;
  }
}

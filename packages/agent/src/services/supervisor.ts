import fs from "node:fs/promises";
import path from "node:path";
import { SERVICE_LIMITS, SERVICE_SETTLE_WAIT_MS, type ServiceAction, type ServiceLogEntry, type ServiceSpec, type ServiceStatus } from "@capsule/agent-protocol";
import { AgentError } from "../errors.js";
import { log } from "../log.js";
import { ROTATED_SUFFIX, readServiceLog } from "./log-file.js";
import { requiredBy, startPlan } from "./order.js";
import { loadDefinitions, removeDefinition, saveDefinition } from "./store.js";
import { Unit, type UnitEvents } from "./unit.js";

/** Resolves after `ms` with nothing: a start's answer waits at most this long. */
const settleWait = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());

/**
 * The services of this VM: their definitions (persisted in `defsDir`), their runs, their
 * dependencies. Definitions are read once, at the first use (boot, or the host's first `svc.*`
 * op); a VM with none pays one readdir.
 */
export class Supervisor {
  readonly #units = new Map<string, Unit>();
  #loaded: Promise<void> | undefined;
  readonly #events: UnitEvents = {
    failed: (unit) => void this.#startOnFailure(unit),
    wentDown: (unit) => this.#stopDependents(unit),
    succeeded: (unit) => void this.#forget(unit, { keepLog: true }).catch((err: unknown) => log(`service ${unit.name}: removing its definition failed: ${(err as Error).message}`)),
  };

  constructor(
    private readonly defsDir: string,
    private readonly logDir: string,
  ) {}

  /** Starts every enabled service, dependencies first; what happens is in their logs. */
  async boot(): Promise<void> {
    await this.#load();
    const enabled = [...this.#units.values()].filter((u) => u.spec.enable).map((u) => u.name);
    if (enabled.length > 0) await this.#startAll(enabled);
  }

  /**
   * Stores the definitions (all or none: a name that exists fails the lot unless `replace`), then
   * with `start` starts the enabled ones (a replaced one that runs is restarted, or stopped if it
   * is now disabled: nothing keeps running under a definition it no longer has) and answers once
   * they settled, or after SERVICE_SETTLE_WAIT_MS with the states they are in.
   */
  async define(specs: ServiceSpec[], opts: { replace: boolean; start: boolean }): Promise<ServiceStatus[]> {
    await this.#load();
    const taken = specs.filter((s) => this.#units.has(s.name));
    if (!opts.replace && taken.length > 0) throw new AgentError("ALREADY_EXISTS", `service ${taken.map((s) => s.name).join(", ")} already exists`);
    if (this.#units.size + specs.length - taken.length > SERVICE_LIMITS.perVm) throw new AgentError("BAD_REQUEST", `a VM may have at most ${SERVICE_LIMITS.perVm} services`);
    await fs.mkdir(this.logDir, { recursive: true, mode: 0o700 });
    for (const spec of specs) await saveDefinition(this.defsDir, spec);
    const restart: Unit[] = [];
    for (const spec of specs) {
      const unit = this.#units.get(spec.name);
      if (!unit) this.#units.set(spec.name, this.#unit(spec));
      else {
        unit.redefine(spec);
        if (unit.cameUp) restart.push(unit);
      }
    }
    const units = specs.map((s) => this.#units.get(s.name) as Unit);
    if (opts.start) {
      await Promise.all(restart.map((u) => u.stop()));
      const starting = this.#startAll(specs.filter((s) => s.enable).map((s) => s.name));
      await Promise.race([starting, settleWait(SERVICE_SETTLE_WAIT_MS)]);
    }
    // From the units themselves: a oneshot deleted after its success is gone from the map already.
    return units.map((u) => u.status());
  }

  async spec(name: string): Promise<ServiceSpec> {
    return (await this.#unitNamed(name)).spec;
  }

  async list(): Promise<ServiceStatus[]> {
    await this.#load();
    return [...this.#units.values()].map((u) => u.status()).sort((a, b) => a.name.localeCompare(b.name));
  }

  async status(name: string): Promise<ServiceStatus> {
    return (await this.#unitNamed(name)).status();
  }

  /** start / stop / restart; answers once it settled (a start: at most SERVICE_SETTLE_WAIT_MS). */
  async control(name: string, action: ServiceAction): Promise<ServiceStatus> {
    const unit = await this.#unitNamed(name);
    if (action !== "start") await unit.stop();
    if (action !== "stop") await Promise.race([this.#startAll([name]), settleWait(SERVICE_SETTLE_WAIT_MS)]);
    return unit.status();
  }

  /** Stops it, then removes its definition and its logs. */
  async delete(name: string): Promise<void> {
    await this.#forget(await this.#unitNamed(name), { keepLog: false });
  }

  async logs(name: string, opts: { lines?: number; sinceMs?: number }): Promise<ServiceLogEntry[]> {
    await this.#unitNamed(name);
    return readServiceLog(this.#logFile(name), opts);
  }

  /** The agent is going away: nothing it started may outlive it. */
  killAll(): void {
    for (const unit of this.#units.values()) unit.kill();
  }

  #load(): Promise<void> {
    this.#loaded ??= loadDefinitions(this.defsDir).then((specs) => {
      for (const spec of specs) this.#units.set(spec.name, this.#unit(spec));
    });
    return this.#loaded;
  }

  #unit(spec: ServiceSpec): Unit {
    return new Unit(spec, this.#logFile(spec.name), this.#events);
  }

  #logFile(name: string): string {
    return path.join(this.logDir, `${name}.log`);
  }

  async #unitNamed(name: string): Promise<Unit> {
    await this.#load();
    const unit = this.#units.get(name);
    if (!unit) throw new AgentError("SERVICE_NOT_FOUND", `no service ${JSON.stringify(name)} in the VM`);
    return unit;
  }

  async #forget(unit: Unit, opts: { keepLog: boolean }): Promise<void> {
    if (this.#units.get(unit.name) !== unit) return;
    this.#units.delete(unit.name);
    await unit.stop();
    unit.kill();
    unit.closeLog();
    await removeDefinition(this.defsDir, unit.name);
    if (!opts.keepLog) await Promise.all([this.#logFile(unit.name), this.#logFile(unit.name) + ROTATED_SUFFIX].map((f) => fs.rm(f, { force: true })));
  }

  /**
   * Starts `roots` and what they require, each once the units it waits for settled; a unit
   * whose required units did not come up does not start (systemd's "dependency failed").
   */
  async #startAll(roots: string[]): Promise<void> {
    const specs = new Map([...this.#units.values()].map((u) => [u.name, u.spec]));
    const plan = startPlan(roots, specs);
    for (const [unit, dep] of plan.cut) this.#units.get(unit)?.note(`Ordering cycle: not waiting for ${dep}`);
    const results = new Map<string, Promise<boolean>>();
    for (const name of plan.order) {
      const unit = this.#units.get(name) as Unit;
      const waits = (plan.waitsFor.get(name) ?? []).map((d) => results.get(d)?.then((up) => [d, up] as const) ?? Promise.resolve([d, false] as const));
      results.set(
        name,
        Promise.all(waits).then((settled) => {
          const failed = settled.filter(([d, up]) => !up && unit.spec.requires?.includes(d)).map(([d]) => d);
          const missing = plan.missing.get(name) ?? [];
          if (missing.length > 0 || failed.length > 0) {
            unit.dependencyFailed([...missing.map((m) => `${m} does not exist`), ...failed.map((f) => `${f} did not start`)].join(", "));
            return false;
          }
          return unit.start();
        }),
      );
    }
    await Promise.all(results.values());
  }

  async #startOnFailure(unit: Unit): Promise<void> {
    const handlers = (unit.spec.onFailure ?? []).filter((n) => this.#units.has(n));
    if (handlers.length === 0) return;
    unit.note(`Triggering OnFailure= ${handlers.join(", ")}`);
    await this.#startAll(handlers);
  }

  #stopDependents(unit: Unit): void {
    for (const name of requiredBy(unit.name, [...this.#units.values()].map((u) => u.spec))) {
      const dependent = this.#units.get(name);
      if (!dependent?.cameUp) continue;
      dependent.note(`Stopping: the required ${unit.name} went down`);
      void dependent.stop();
    }
  }
}

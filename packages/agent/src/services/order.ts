import { TARGET_UNIT_SUFFIX, type ServiceSpec } from "@capsule/agent-protocol";

/** What starting some services involves: which units, in which order, each waiting for which. */
export interface StartPlan {
  /** Every unit to start, each after the units it waits for. */
  order: string[];
  /** The units of the plan each one waits for (its `after` and `requires`, cycles cut). */
  waitsFor: Map<string, string[]>;
  /** Units whose `requires` names a service that does not exist: they cannot start. */
  missing: Map<string, string[]>;
  /** Dependency edges dropped to break a cycle, as [unit, the unit it would have waited for]. */
  cut: Array<[string, string]>;
}

const isTarget = (unit: string): boolean => unit.endsWith(TARGET_UNIT_SUFFIX);

/**
 * Plans a start of `roots`: every service they require (transitively) joins them; `after` only
 * orders units that start anyway. Targets are always reached, so nothing waits on them. A cycle
 * is broken where the walk finds it (systemd drops a job there too), and reported in `cut`.
 */
export function startPlan(roots: readonly string[], specs: ReadonlyMap<string, ServiceSpec>): StartPlan {
  const members = new Set<string>();
  const missing = new Map<string, string[]>();
  const pending = roots.filter((r) => specs.has(r));
  while (pending.length > 0) {
    const name = pending.pop() as string;
    if (members.has(name)) continue;
    members.add(name);
    for (const dep of specs.get(name)?.requires ?? []) {
      if (isTarget(dep)) continue;
      if (specs.has(dep)) pending.push(dep);
      else missing.set(name, [...(missing.get(name) ?? []), dep]);
    }
  }
  const order: string[] = [];
  const waitsFor = new Map<string, string[]>();
  const cut: Array<[string, string]> = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (name: string): void => {
    state.set(name, "visiting");
    const spec = specs.get(name);
    const deps = [...new Set([...(spec?.after ?? []), ...(spec?.requires ?? [])])].filter((d) => members.has(d)).sort();
    const kept: string[] = [];
    for (const dep of deps) {
      const s = state.get(dep);
      if (s === "visiting") cut.push([name, dep]);
      else {
        if (s === undefined) visit(dep);
        kept.push(dep);
      }
    }
    waitsFor.set(name, kept);
    state.set(name, "done");
    order.push(name);
  };
  for (const name of [...members].sort()) if (!state.has(name)) visit(name);
  return { order, waitsFor, missing, cut };
}

/** The services whose `requires` names `name`: they go down with it. */
export function requiredBy(name: string, specs: Iterable<ServiceSpec>): string[] {
  return [...specs].filter((s) => s.requires?.includes(name)).map((s) => s.name);
}

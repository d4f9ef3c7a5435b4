/**
 * Prometheus metrics: VM counts by API state (collected at scrape time from the engine), HTTP
 * request latency by route pattern (never the raw path, so ids do not explode cardinality), and
 * exec counts by outcome, and the warm pool's state.
 * @module
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { PoolStats } from "./vms/pool.js";

export class Metrics {
  readonly registry = new Registry();
  readonly httpDuration = new Histogram({
    name: "capsule_http_request_duration_seconds",
    help: "HTTP request latency until the response headers, by method, route pattern and status",
    labelNames: ["method", "route", "status"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });
  readonly execs = new Counter({
    name: "capsule_exec_total",
    help: "Commands run through exec-await and the exec stream, by outcome",
    labelNames: ["kind", "outcome"] as const,
    registers: [this.registry],
  });
  readonly wsSessions = new Gauge({
    name: "capsule_websockets_open",
    help: "Open WebSockets, by kind (pty, exec)",
    labelNames: ["kind"] as const,
    registers: [this.registry],
  });

  /** `restoreTargetReady`: whether the engine has a restore target made ahead (Engine.preparedRestore). */
  constructor(vmCounts: () => Promise<Record<string, number>>, pool: () => PoolStats, restoreTargetReady: () => boolean = () => false) {
    collectDefaultMetrics({ register: this.registry, prefix: "capsule_process_" });
    new Gauge({
      name: "capsule_vms",
      help: "VMs by API state",
      labelNames: ["state"] as const,
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const [state, n] of Object.entries(await vmCounts())) this.set({ state }, n);
      },
    });
    const poolGauge = (name: string, help: string, value: (s: PoolStats) => number) =>
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.set(value(pool()));
        },
      });
    poolGauge("capsule_pool_ready", "Warm VMs ready to be claimed by a create", (s) => s.ready);
    poolGauge("capsule_pool_booting", "Warm VMs booting", (s) => s.booting);
    poolGauge("capsule_pool_target", "Warm VMs the pool aims to keep (default kind plus hot kinds)", (s) => s.target);
    poolGauge("capsule_pool_memory_limit_mib", "Sum of the memory limits of the pool's VMs, MiB (counted against the host's capacity; budget pool.maxMemoryMb)", (s) => s.memoryMb);
    const poolCounter = (name: string, help: string, value: (s: PoolStats) => number) =>
      new Counter({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.reset();
          this.inc(value(pool()));
        },
      });
    poolCounter("capsule_pool_claims_total", "Creates that got a warm VM", (s) => s.hits);
    poolCounter("capsule_pool_misses_total", "Creates that found no warm VM of their kind and booted one", (s) => s.misses);
    new Gauge({
      name: "capsule_memory_restore_target_ready",
      help: "1 while a restore target made ahead waits for the next create from the memory snapshot restored last",
      registers: [this.registry],
      collect() {
        this.set(restoreTargetReady() ? 1 : 0);
      },
    });
  }
}

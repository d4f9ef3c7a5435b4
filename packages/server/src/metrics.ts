/**
 * Prometheus metrics: VM counts by API state (collected at scrape time from the engine), HTTP
 * request latency by route pattern (never the raw path, so ids do not explode cardinality), and
 * exec counts by outcome.
 * @module
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

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

  constructor(vmCounts: () => Promise<Record<string, number>>) {
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
  }
}

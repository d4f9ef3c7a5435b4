/**
 * `npm run fuzz [-- flags]`: both fuzzers against a real server started for the run (root, the
 * installed image and agent bundle). Exit 1 when any check fails.
 *
 *   --agent-frames N   cases for the agent-protocol fuzzer (default 100000; 0 skips it)
 *   --api-requests N   cases for the API fuzzer (default 50000; 0 skips it)
 *   --seed S           PRNG seed (default: the time); a failure names the seed to replay
 *   --duration S       time limit per fuzzer in seconds (default 1200); hitting it is a failure
 *   --concurrency N    calls in flight (default 8)
 *   --short            the `npm test` run: 5000 frames and 3000 requests
 *   --max-rss-mib N    the server's RSS bound (default 1024)
 *   --json             print the results as JSON instead of a table
 */
import fs from "node:fs";
import { parseArgs } from "node:util";
import { hostGap } from "@capsule/engine/test-support";
import { agentFuzz, type AgentFuzzResult } from "./agent-fuzz.js";
import { apiFuzz, type ApiFuzzResult } from "./api-fuzz.js";
import { mib, ServerProc } from "./common.js";

const { values } = parseArgs({
  options: {
    "agent-frames": { type: "string" },
    "api-requests": { type: "string" },
    seed: { type: "string" },
    duration: { type: "string" },
    concurrency: { type: "string" },
    short: { type: "boolean" },
    "max-rss-mib": { type: "string" },
    json: { type: "boolean" },
  },
});
const num = (v: string | undefined, d: number) => (v === undefined ? d : Number(v));
const frames = num(values["agent-frames"], values.short ? 5_000 : 100_000);
const requests = num(values["api-requests"], values.short ? 3_000 : 50_000);
const seed = num(values.seed, Date.now() % 2 ** 31);
const durationMs = num(values.duration, values.short ? 300 : 1200) * 1000;
const concurrency = num(values.concurrency, 8);
/** The server's RSS must stay under this (MiB) for the whole run. */
const maxRssBytes = num(values["max-rss-mib"], 1024) * 1048576;
/** Progress, on stderr (also with --json, whose document is stdout). */
const log = (s: string) => {
  process.stderr.write(`${s}\n`);
};

const gap = await hostGap();
if (gap) {
  process.stderr.write(`fuzz: this host cannot run sandboxes: ${gap}\n`);
  process.exit(1);
}

const results: Array<AgentFuzzResult | ApiFuzzResult> = [];
let setupError: string | undefined;
// A stray error event in the fuzzer itself must not skip the clean-up (VMs outlive their server).
const fuzzerErrors: string[] = [];
process.on("uncaughtException", (e) => {
  if (fuzzerErrors.length < 10) fuzzerErrors.push(e.stack ?? String(e));
});
for (const which of ["agent", "api"] as const) {
  if ((which === "agent" ? frames : requests) <= 0) continue;
  const srv = await ServerProc.start();
  try {
    log(`fuzz ${which}: server pid ${srv.pid} at ${srv.url}, seed ${seed}`);
    results.push(which === "agent" ? await agentFuzz(srv, { frames, seed, durationMs, concurrency, log }) : await apiFuzz(srv, { requests, seed, durationMs, concurrency, log }));
  } catch (e) {
    setupError = `${which}: ${e instanceof Error ? e.stack : String(e)}\n${srv.logTail.slice(-3000)}`;
  } finally {
    await srv.stop();
    // The server's log is kept (and named) only when its run failed.
    const last = results.at(-1);
    if (setupError || !last || last.failures.length > 0) log(`fuzz ${which}: the server's log is ${srv.logFile}`);
    else fs.rmSync(srv.logFile, { force: true });
  }
  if (setupError) break;
}

for (const r of results) if (r.peakRssBytes > maxRssBytes) r.failures.push(`the server's RSS peaked at ${mib(r.peakRssBytes)}, over the ${mib(maxRssBytes)} bound`);
if (fuzzerErrors.length) setupError = `${setupError ?? ""}\nthe fuzzer's own errors:\n${fuzzerErrors.join("\n")}`;
const failed = !!setupError || results.some((r) => r.failures.length > 0);
if (values.json) {
  process.stdout.write(`${JSON.stringify({ seed, ok: !failed, setupError, results }, null, 2)}\n`);
} else {
  const rows = results.map((r) => ({
    fuzzer: r.fuzzer,
    cases: r.cases,
    "host calls": r.fuzzer === "agent" ? r.hostCalls : r.cases,
    crashes: r.crashes,
    "5xx (undocumented)": r.fuzzer === "api" ? r.undocumented5xx : r.failures.filter((f) => f.includes("undocumented")).length,
    "cross-tenant": r.fuzzer === "api" ? r.crossTenant : "-",
    leaks: r.leaks.length,
    "peak RSS": mib(r.peakRssBytes),
    failures: r.failures.length,
    seconds: Math.round(r.durationMs / 1000),
  }));
  console.table(rows);
  for (const r of results) {
    console.log(`${r.fuzzer} outcomes: ${JSON.stringify(r.outcomes)}`);
    if (r.fuzzer === "agent") console.log(`agent: baseline fds ${r.baseline.fds} sockets ${r.baseline.sockets} RSS ${mib(r.baseline.rssBytes)}; after fds ${r.after.fds} sockets ${r.after.sockets} RSS ${mib(r.after.rssBytes)}; resources ${JSON.stringify(r.baseline.resources)} -> ${JSON.stringify(r.after.resources)}`);
    for (const f of r.failures) console.log(`FAIL ${r.fuzzer} (seed ${seed}): ${f}`);
  }
  if (setupError) console.log(`FAIL (seed ${seed}): ${setupError}`);
  console.log(failed ? `fuzz: FAILED (seed ${seed})` : `fuzz: ok (seed ${seed})`);
}
process.exit(failed ? 1 : 0);

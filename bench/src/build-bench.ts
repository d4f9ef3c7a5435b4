/**
 * Declarative snapshot builds: the first build of a template and the cached ensure after it.
 *   npm run bench:build -- [--samples N] [--package jq] [--json]
 * A server in this process (scratch data dir, egress none: apt goes through the host's package
 * cache, warm after the first sample) ensures a template — the package, a file, a runCommands
 * oneshot and an enabled service — N times with a fresh discriminator (each a real build), each
 * followed by a second ensure of the same template (the cache: no build), and a create with the
 * template inline (cached ensure + boot from the snapshot). Wall-clock ms, medians and extremes.
 * Needs root and a set-up host. Leaves nothing behind.
 * @module
 */
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { startServer } from "@capsule/server";

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string) => (argv.includes(name) ? (argv[argv.indexOf(name) + 1] ?? dflt) : dflt);
const SAMPLES = Number(opt("--samples", "3"));
const PACKAGE = opt("--package", "jq");
const asJson = argv.includes("--json");
const DATA = process.env.CAPSULE_DATA_DIR ?? "/var/lib/capsule";
const AGENT = process.env.CAPSULE_AGENT_BUNDLE ?? path.join(DATA, "agent");

const log = (...a: unknown[]) => {
  if (!asJson) console.error(...a);
};
const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { n: s.length, median: s[Math.floor(s.length / 2)] ?? NaN, min: s[0] ?? NaN, max: s.at(-1) ?? NaN };
};

function template(discriminator: string): Record<string, unknown> {
  return {
    discriminator,
    aptDeps: [PACKAGE],
    additionalFiles: { "/opt/bench/hello.txt": { content: "hello\n" } },
    systemd: {
      services: [
        { name: "bench-setup", mode: "oneshot", deleteAfterSuccess: true, exec: ["cp /opt/bench/hello.txt /opt/bench/copied.txt"] },
        { name: "bench-idle", mode: "service", exec: ["sleep infinity"], enable: true, after: ["bench-setup.service"], requires: ["bench-setup.service"] },
      ],
    },
  };
}

const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-build-bench-"));
const server = await startServer({
  port: 0,
  host: "127.0.0.1",
  dataDir,
  imagesDir: path.join(DATA, "images"),
  agentBundleDir: AGENT,
  egress: "none",
  defaultIdleTimeoutSeconds: null,
  pool: { size: 0, hotSize: 0 },
});
const key = server.keys.createKey("bench").key;

async function post(p: string, body: unknown): Promise<{ ms: number; body: Record<string, unknown> }> {
  const t0 = performance.now();
  const res = await fetch(server.url + p, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify(body) });
  const json = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${p}: ${res.status} ${JSON.stringify(json)}`);
  return { ms: performance.now() - t0, body: json };
}

const first: number[] = [];
const cached: number[] = [];
const create: number[] = [];
try {
  const run = Date.now().toString(36);
  for (let i = 0; i < SAMPLES; i++) {
    const t = template(`bench-${run}-${i}`);
    const built = await post("/v1/vms/snapshots", { template: t });
    if (built.body.cached !== false) throw new Error("the first ensure was not a build");
    const again = await post("/v1/vms/snapshots", { template: t });
    if (again.body.cached !== true || again.body.snapshotId !== built.body.snapshotId) throw new Error("the second ensure was not the cached snapshot");
    const vm = await post("/v1/vms", { template: t });
    first.push(built.ms);
    cached.push(again.ms);
    create.push(vm.ms);
    log(`sample ${i + 1}/${SAMPLES}: first build ${built.ms.toFixed(0)} ms, cached ensure ${again.ms.toFixed(1)} ms, create with the template ${vm.ms.toFixed(0)} ms`);
    await fetch(`${server.url}/v1/vms/${String(vm.body.id)}`, { method: "DELETE", headers: { authorization: `Bearer ${key}` } });
  }
  const result = { package: PACKAGE, firstBuildMs: stats(first), cachedEnsureMs: stats(cached), createWithTemplateMs: stats(create) };
  if (asJson) console.log(JSON.stringify(result));
  else {
    console.log(`declarative snapshot of {aptDeps: [${PACKAGE}], a file, a oneshot, a service}, ${SAMPLES} samples (ms):`);
    for (const [name, s] of Object.entries(result).filter(([k]) => k !== "package")) {
      const v = s as ReturnType<typeof stats>;
      console.log(`  ${name.padEnd(22)} median ${v.median.toFixed(1).padStart(8)}  min ${v.min.toFixed(1).padStart(8)}  max ${v.max.toFixed(1).padStart(8)}`);
    }
  }
} finally {
  await server.svc.pool.close();
  for (const vm of await server.engine.listVms()) await server.engine.deleteVm(vm.id, { wait: true }).catch(() => undefined);
  for (const s of await server.engine.listSnapshots()) await server.engine.deleteSnapshot(s.id).catch(() => undefined);
  await server.close();
  await fs.rm(dataDir, { recursive: true, force: true });
}

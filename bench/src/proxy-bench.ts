/**
 * The preview proxy's added latency per request, in one run, against a direct connection:
 *   npm run bench:proxy -- [--requests N] [--rounds R] [--json]
 * A small HTTP server in a VM (the agent bundle's Node, on 0.0.0.0:5173, a 2-byte answer) is
 * asked the same GET, one request at a time, three ways, interleaved in R rounds so the host's
 * load drifts over all of them alike:
 *   direct  from inside the VM's netns (`ip netns exec`) to the VM's own address, a new TCP
 *           connection per request (what the proxy does upstream);
 *   tunnel  the engine's tcp.connect tunnel through the agent (engine.guest.connectTcp), then
 *           the request over it: the proxy's upstream leg alone;
 *   proxy   a keep-alive client to the server's port with the preview Host and the API key: the
 *           whole path (Host routing, auth, gateway, tunnel, header filtering, piping).
 * Percentiles in ms. Needs root and a set-up host. Leaves nothing behind.
 * @module
 */
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { startServer } from "@capsule/server";

const argv = process.argv.slice(2);
const opt = (name: string, dflt: number) => (argv.includes(name) ? Number(argv[argv.indexOf(name) + 1]) : dflt);
const REQUESTS = opt("--requests", 300);
const ROUNDS = opt("--rounds", 5);
const asJson = argv.includes("--json");
const DATA = process.env.CAPSULE_DATA_DIR ?? "/var/lib/capsule";
const AGENT = process.env.CAPSULE_AGENT_BUNDLE ?? path.join(DATA, "agent");
const PORT = 5173;
const VM_NODE = "/.capsule/lib/ld-linux-x86-64.so.2 --library-path /.capsule/lib /.capsule/bin/node";
const APP = `require("http").createServer((q, s) => s.end("ok")).listen(${PORT}, "0.0.0.0", () => console.log("ready"));`;
/** The direct client, run by the host's Node inside the VM's netns: one connection per request, latencies (ms) as JSON. */
const DIRECT_CLIENT = `
const http = require("http");
const [ip, port, n] = process.argv.slice(2);
const once = () => new Promise((resolve, reject) => {
  const t0 = performance.now();
  http.get({ host: ip, port: Number(port), path: "/", agent: false }, (res) => { res.resume(); res.on("end", () => resolve(performance.now() - t0)); }).on("error", reject);
});
(async () => { const out = []; for (let i = 0; i < Number(n); i++) out.push(await once()); console.log(JSON.stringify(out)); })();
`;

const log = (...a: unknown[]) => {
  if (!asJson) console.error(...a);
};

function percentiles(xs: number[]): Record<string, number> {
  const s = [...xs].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
  const round = (v: number) => Math.round(v * 1000) / 1000;
  return { n: s.length, p50: round(at(50)), p90: round(at(90)), p99: round(at(99)), mean: round(s.reduce((a, b) => a + b, 0) / s.length) };
}

function get(opts: http.RequestOptions): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request(opts, (res) => {
      res.resume();
      res.on("end", () => (res.statusCode === 200 ? resolve(performance.now() - t0) : reject(new Error(`status ${res.statusCode}`))));
    });
    req.on("error", reject);
    req.end();
  });
}

function runDirect(script: string, vmId: string, ip: string, n: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const child = spawn("ip", ["netns", "exec", `cap-${vmId}`, process.execPath, script, ip, String(PORT), String(n)], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out) as number[]) : reject(new Error(`direct client exited ${code}`))));
  });
}

async function main(): Promise<void> {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-proxy-bench-"));
  const server = await startServer({ port: 0, host: "127.0.0.1", dataDir, imagesDir: path.join(DATA, "images"), agentBundleDir: AGENT, egress: "none", defaultIdleTimeoutSeconds: null, pool: { size: 0, hotSize: 0 }, logLevel: "warn" });
  const script = path.join(dataDir, "direct-client.cjs");
  try {
    const key = server.keys.createKey("bench").key;
    const created = await fetch(`${server.url}/v1/vms`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: "{}" });
    const vmId = ((await created.json()) as { id: string }).id;
    const ip = (await server.engine.getVm(vmId)).ip;
    if (!ip) throw new Error("the VM has no address");
    await server.engine.guest.writeFile(vmId, "/srv/bench-app.js", APP);
    const started = await server.engine.guest.exec(vmId, { command: `setsid ${VM_NODE} /srv/bench-app.js >/srv/app.log 2>&1 </dev/null & for i in $(seq 200); do grep -q ready /srv/app.log && exit 0; sleep 0.05; done; exit 1` });
    if (started.exitCode !== 0) throw new Error(`the app did not start: ${started.stderr}`);
    await fs.writeFile(script, DIRECT_CLIENT);
    const host = `${PORT}-${vmId}.localhost:${server.port}`;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const proxyOnce = () => get({ host: "127.0.0.1", port: server.port, path: "/", agent, headers: { host, authorization: `Bearer ${key}` } });
    const tunnelOnce = async () => {
      const t0 = performance.now();
      const sock = await server.engine.guest.connectTcp(vmId, PORT);
      await new Promise<void>((resolve, reject) => {
        const req = http.request({ path: "/", createConnection: () => sock }, (res) => {
          res.resume();
          res.on("end", () => resolve());
        });
        req.once("socket", (s: import("node:net").Socket) => s.resume());
        req.on("error", reject);
        req.end();
      });
      sock.destroy();
      return performance.now() - t0;
    };
    // Warm-up: first connections fault in pages in the sandbox and JIT the paths.
    for (let i = 0; i < 20; i++) await proxyOnce();
    for (let i = 0; i < 20; i++) await tunnelOnce();
    await runDirect(script, vmId, ip, 20);
    const samples = { direct: [] as number[], tunnel: [] as number[], proxy: [] as number[] };
    const per = Math.ceil(REQUESTS / ROUNDS);
    for (let r = 0; r < ROUNDS; r++) {
      samples.direct.push(...(await runDirect(script, vmId, ip, per)));
      for (let i = 0; i < per; i++) samples.tunnel.push(await tunnelOnce());
      for (let i = 0; i < per; i++) samples.proxy.push(await proxyOnce());
      log(`round ${r + 1}/${ROUNDS} done`);
    }
    agent.destroy();
    const result = { requests: per * ROUNDS, rounds: ROUNDS, direct: percentiles(samples.direct), tunnel: percentiles(samples.tunnel), proxy: percentiles(samples.proxy) };
    const added = { p50: Math.round((result.proxy.p50! - result.direct.p50!) * 1000) / 1000, p90: Math.round((result.proxy.p90! - result.direct.p90!) * 1000) / 1000 };
    if (asJson) console.log(JSON.stringify({ ...result, proxyAddedMs: added }));
    else {
      console.log(`per-request latency, ms (${result.requests} sequential GETs each, ${ROUNDS} interleaved rounds)`);
      console.log(["way", "p50", "p90", "p99", "mean"].map((s) => s.padEnd(8)).join(""));
      for (const way of ["direct", "tunnel", "proxy"] as const) {
        const p = result[way];
        console.log([way, p.p50, p.p90, p.p99, p.mean].map((s) => String(s).padEnd(8)).join(""));
      }
      console.log(`proxy added over direct: p50 ${added.p50} ms, p90 ${added.p90} ms`);
    }
    await server.engine.deleteVm(vmId, { wait: true });
  } finally {
    await server.close();
    await fs.rm(dataDir, { recursive: true, force: true });
  }
}

await main();

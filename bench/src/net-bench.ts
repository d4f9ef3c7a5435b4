/**
 * The two network stacks side by side in one run (issue 15): an engine on gVisor's netstack and
 * one on hostinet, same runsc, samples interleaved so host load hits both alike.
 *   npm run bench:net                  (human table)
 *   npm run bench:net -- --json        (medians as JSON)
 * Options: --samples N (default 5: boots, file and TCP runs; 10x that for exec `true`),
 * --mb N (default 100: the file's and each transfer's size). CAPSULE_RUNSC picks the runsc (default
 * runsc on PATH; it must start netstack). Needs root and a set-up host. Leaves nothing behind.
 */
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Engine, type NetworkStack } from "@capsule/engine";
import { benchArgs } from "./measure.js";

const { asJson, num } = benchArgs();
const SAMPLES = num("--samples", 5);
const MB = num("--mb", 100);
const BYTES = MB * 1024 * 1024;
const DATA = process.env.CAPSULE_DATA_DIR ?? "/var/lib/capsule";
const STACKS: NetworkStack[] = ["netstack", "hostinet"];
/** The VM's port for host → VM transfers. */
const GUEST_PORT = 9100;
const log = (...a: unknown[]) => {
  if (!asJson) console.error(...a);
};

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** The agent bundle's Node, the only one every image has. */
const GUEST_NODE = "/.capsule/lib/ld-linux-x86-64.so.2 --library-path /.capsule/lib /.capsule/bin/node";

/**
 * In the VM: `send HOST PORT BYTES` writes BYTES to the host, `recv PORT` counts what one
 * connection brings; each prints the ms from connect (or accept) to the end of the stream.
 */
const GUEST_TCP = `
const net = require("node:net");
const [mode, a, b, c] = process.argv.slice(1);
if (mode === "send") {
  const chunk = Buffer.alloc(1 << 20), total = Number(c);
  const s = net.connect(Number(b), a, () => {
    const t0 = performance.now();
    let sent = 0;
    const pump = () => { while (sent < total) { sent += chunk.length; if (!s.write(chunk)) return s.once("drain", pump); } s.end(); };
    s.on("close", () => console.log(performance.now() - t0));
    s.resume();
    pump();
  });
} else {
  const srv = net.createServer((s) => {
    const t0 = performance.now();
    s.on("data", () => {}).on("end", () => { console.log(performance.now() - t0); s.end(); srv.close(); });
  }).listen(Number(a), () => console.log("ready"));
}`;

interface Figures {
  bootToFirstExecMs: number[];
  execTrueMs: number[];
  fileWriteMs: number[];
  fileReadMs: number[];
  vmToHostMs: number[];
  hostToVmMs: number[];
}

async function openEngine(stack: NetworkStack, hostPort: number, runscPath: string): Promise<{ engine: Engine; dataDir: string }> {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), `capsule-net-bench-${stack}-`));
  const engine = await Engine.open({ dataDir, imagesDir: path.join(DATA, "images"), agentBundleDir: path.join(DATA, "agent"), network: stack, runscPath, allowedHostPorts: [hostPort], packageCaches: false });
  if (engine.features.network !== stack) throw new Error(`asked for ${stack}, the engine runs ${engine.features.network}`);
  return { engine, dataDir };
}

/** A host listener that drains each connection and closes it at the end. */
async function sink(): Promise<net.Server> {
  const srv = net.createServer((s) => s.on("data", () => {}).on("end", () => s.end()));
  await new Promise<void>((resolve) => srv.listen(0, "0.0.0.0", resolve));
  return srv;
}

/** Host → VM: the VM's listener reports how long the stream took from its accept. */
async function hostToVm(engine: Engine, id: string, guestIp: string): Promise<number> {
  const listening = engine.guest.exec(id, { command: `${GUEST_NODE} -e '${GUEST_TCP}' recv ${GUEST_PORT}` });
  const chunk = Buffer.alloc(1 << 20);
  for (let attempt = 0; ; attempt++) {
    const sock = net.connect(GUEST_PORT, guestIp);
    const ok = await new Promise<boolean>((resolve) => sock.once("connect", () => resolve(true)).once("error", () => resolve(false)));
    if (!ok) {
      if (attempt > 100) throw new Error(`the VM's listener on ${guestIp}:${GUEST_PORT} never answered`);
      await new Promise((r) => setTimeout(r, 50));
      continue;
    }
    sock.resume();
    for (let sent = 0; sent < BYTES; sent += chunk.length) if (!sock.write(chunk)) await new Promise((r) => sock.once("drain", r));
    sock.end();
    await new Promise((r) => sock.once("close", r));
    break;
  }
  const r = await listening;
  if (r.exitCode !== 0) throw new Error(`guest listener failed: ${r.stderr}`);
  return Number(r.stdout.trim().split("\n").pop());
}

async function sampleOnce(engine: Engine, hostPort: number, f: Figures, execs: number): Promise<void> {
  let id = "";
  let guestIp = "";
  let gateway = "";
  f.bootToFirstExecMs.push(
    await time(async () => {
      const vm = await engine.createVm();
      id = vm.id;
      guestIp = vm.ip ?? "";
      gateway = vm.gatewayIp ?? "";
      await engine.guest.exec(id, { command: "true" });
    }),
  );
  try {
    for (let i = 0; i < execs; i++) f.execTrueMs.push(await time(() => engine.guest.exec(id, { command: "true" })));
    // dd's own timing would include gVisor's clock; the shell's nanosecond clock around each is the same for both stacks.
    const file = await engine.guest.exec(id, {
      command: `t0=$(date +%s%N); dd if=/dev/zero of=/root/bench.bin bs=1M count=${MB} conv=fsync status=none; t1=$(date +%s%N); dd if=/root/bench.bin of=/dev/null bs=1M status=none; t2=$(date +%s%N); rm /root/bench.bin; echo $(( (t1 - t0) / 1000 )) $(( (t2 - t1) / 1000 ))`,
    });
    const [w, r] = file.stdout.trim().split(" ").map((us) => Number(us) / 1000);
    f.fileWriteMs.push(w!);
    f.fileReadMs.push(r!);
    const send = await engine.guest.exec(id, { command: `${GUEST_NODE} -e '${GUEST_TCP}' send ${gateway} ${hostPort} ${BYTES}` });
    if (send.exitCode !== 0) throw new Error(`guest sender failed: ${send.stderr}`);
    f.vmToHostMs.push(Number(send.stdout.trim()));
    f.hostToVmMs.push(await hostToVm(engine, id, guestIp));
  } finally {
    await engine.deleteVm(id, { wait: true });
  }
}

async function main(): Promise<void> {
  const runscPath = process.env.CAPSULE_RUNSC ?? "runsc";
  const host = await sink();
  const hostPort = (host.address() as net.AddressInfo).port;
  const engines: Array<{ stack: NetworkStack; engine: Engine; dataDir: string; f: Figures }> = [];
  try {
    for (const stack of STACKS) {
      engines.push({ stack, ...(await openEngine(stack, hostPort, runscPath)), f: { bootToFirstExecMs: [], execTrueMs: [], fileWriteMs: [], fileReadMs: [], vmToHostMs: [], hostToVmMs: [] } });
    }
    log(`${SAMPLES} samples per stack, interleaved; ${SAMPLES * 10} execs; ${MB} MiB files and transfers; runsc ${runscPath}`);
    for (let i = 0; i < SAMPLES; i++) {
      for (const e of i % 2 ? [...engines].reverse() : engines) await sampleOnce(e.engine, hostPort, e.f, 10);
      log(`  sample ${i + 1}/${SAMPLES} done`);
    }
  } finally {
    for (const e of engines) {
      await e.engine.close();
      await fs.rm(e.dataDir, { recursive: true, force: true });
    }
    host.close();
  }
  const mbps = (ms: number) => (MB / (ms / 1000)).toFixed(0);
  const rows = engines.map(({ stack, f }) => ({
    stack,
    bootToFirstExecMs: Math.round(median(f.bootToFirstExecMs)),
    execTrueMs: Number(median(f.execTrueMs).toFixed(1)),
    fileWrite: `${Math.round(median(f.fileWriteMs))} ms (${mbps(median(f.fileWriteMs))} MiB/s)`,
    fileRead: `${Math.round(median(f.fileReadMs))} ms (${mbps(median(f.fileReadMs))} MiB/s)`,
    vmToHost: `${Math.round(median(f.vmToHostMs))} ms (${mbps(median(f.vmToHostMs))} MiB/s)`,
    hostToVm: `${Math.round(median(f.hostToVmMs))} ms (${mbps(median(f.hostToVmMs))} MiB/s)`,
  }));
  if (asJson) console.log(JSON.stringify({ samples: SAMPLES, mb: MB, medians: rows, raw: Object.fromEntries(engines.map((e) => [e.stack, e.f])) }));
  else console.table(rows);
}

await main();

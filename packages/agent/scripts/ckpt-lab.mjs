#!/usr/bin/env node
// Checkpoint/restore lab for issue 15 (docs/memory-snapshots-spike.md): real Capsule VMs (the
// agent bundle under tini, the engine's mounts) on gVisor's netstack in hand-made netns, booted,
// prepared with `ckpt.prepare`, checkpointed and restored with runsc directly, and timed; raw
// `runsc checkpoint`/`restore` of the same VM image beside them. Until the engine's netstack
// mode lands this is how the agent side is measured. Everything it makes is named ck15-* (netns,
// veths ck15h*/ck15g*, sandboxes) under one scratch dir, and removed at the end, also on failure.
//
//   node packages/agent/scripts/ckpt-lab.mjs --bundle /tmp/agent-x/current --runsc RUNSC \
//        [--scenario generations|consistency|measure] [--samples 5] [--keep]
//
// Run as root, from /work/main after `npx tsc -b` (it uses the engine's AgentClient), under the
// heavy-work lock.
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { AgentClient } from "../../engine/dist/src/agent/client.js";
import { copyLayer } from "../../engine/dist/src/disk/layers.js";
import { checkpointVm, maxImageBytes, restoreVm } from "../../engine/dist/src/memory/checkpoint.js";
import { RunscRuntime } from "../../engine/dist/src/runtime/runsc.js";

const { values: opt } = parseArgs({
  options: {
    bundle: { type: "string" },
    runsc: { type: "string" },
    rootfs: { type: "string", default: "/var/lib/capsule/images/trixie/rootfs" },
    scenario: { type: "string", default: "generations" },
    samples: { type: "string", default: "5" },
    keep: { type: "boolean", default: false },
  },
});
if (!opt.bundle || !opt.runsc) throw new Error("--bundle and --runsc are required");
const RUNSC = opt.runsc;
const SCRATCH = fs.mkdtempSync("/tmp/ck15-");
const STATE = path.join(SCRATCH, "runsc-root");
const FLAGS = ["--platform=systrap", "--network=sandbox", "--net-disconnect-ok", "--overlay2=none", "--host-uds=create"];
const MARKER = "ckpt-resume";
const made = { netns: [], mounts: [], sandboxes: [] };
const RT = new RunscRuntime(RUNSC, STATE, "systrap", "netstack");

const sh = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts }).toString();
const ms = (t0) => Math.round((performance.now() - t0) * 10) / 10;
const sleep = (n) => new Promise((r) => setTimeout(r, n));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** One VM's host side: netns n, an overlay rootfs (or a copy of another VM's upper), a guest tmpfs. */
function makeVm(n, fromUpper) {
  const dir = path.join(SCRATCH, `vm${n}`);
  const ns = `ck15-ns${n}`;
  const [host, guest] = [`ck15h${n}`, `ck15g${n}`];
  sh("ip", ["netns", "add", ns]);
  made.netns.push(ns);
  sh("ip", ["link", "add", host, "type", "veth", "peer", "name", guest, "netns", ns]);
  sh("ip", ["addr", "add", `10.250.16.${4 * n + 1}/30`, "dev", host]);
  sh("ip", ["link", "set", host, "up"]);
  sh("ip", ["-n", ns, "addr", "add", `10.250.16.${4 * n + 2}/30`, "dev", guest]);
  sh("ip", ["-n", ns, "link", "set", guest, "up"]);
  sh("ip", ["-n", ns, "link", "set", "lo", "up"]);
  sh("ip", ["-n", ns, "route", "add", "default", "via", `10.250.16.${4 * n + 1}`]);
  for (const d of ["upper", "work", "rootfs", "guest", "bundle"]) fs.mkdirSync(path.join(dir, d), { recursive: true });
  if (fromUpper) sh("cp", ["-a", `${fromUpper}/.`, path.join(dir, "upper")]);
  sh("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${opt.rootfs},upperdir=${dir}/upper,workdir=${dir}/work`, `${dir}/rootfs`]);
  made.mounts.push(`${dir}/rootfs`);
  sh("mount", ["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", `${dir}/guest`]);
  made.mounts.push(`${dir}/guest`);
  fs.mkdirSync(`${dir}/guest/run`, { mode: 0o700 });
  fs.mkdirSync(`${dir}/guest/etc`);
  fs.writeFileSync(`${dir}/guest/etc/hosts`, "127.0.0.1 localhost\n");
  fs.writeFileSync(`${dir}/guest/etc/resolv.conf`, "");
  fs.writeFileSync(`${dir}/guest/etc/hostname`, `ck15-${n}\n`);
  fs.writeFileSync(`${dir}/bundle/config.json`, JSON.stringify(spec(dir, ns)));
  return { n, dir, ns, id: `ck15-${process.pid}-${n}`, run: `${dir}/guest/run`, upper: `${dir}/upper`, agent: new AgentClient(`${dir}/guest/run/agent.sock`) };
}

/** The engine's spec (runtime/oci.ts), by hand: the lab must not depend on engine changes in flight. */
function spec(dir, ns) {
  const caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP"];
  const snapshot = fs.existsSync(path.join(opt.bundle, "agent/main.blob"));
  const bind = (destination, source, o = ["rbind", "rw"]) => ({ destination, type: "bind", source, options: o });
  return {
    ociVersion: "1.0.2",
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: ["/.capsule/bin/tini", "-s", "-g", "--", "/.capsule/lib/ld-linux-x86-64.so.2", "--library-path", "/.capsule/lib", "/.capsule/bin/node", ...(snapshot ? ["--snapshot-blob", "/.capsule/agent/main.blob"] : ["/.capsule/agent/main.js"])],
      env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"],
      cwd: "/",
      capabilities: { bounding: caps, effective: caps, permitted: caps },
    },
    root: { path: `${dir}/rootfs`, readonly: false },
    hostname: path.basename(dir),
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
      { destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
      { destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
      { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
      bind("/.capsule", opt.bundle, ["rbind", "ro", "nosuid", "nodev"]),
      bind("/.capsule-run", `${dir}/guest/run`, ["rbind", "rw", "nosuid", "nodev", "noexec"]),
      bind("/etc/hosts", `${dir}/guest/etc/hosts`),
      bind("/etc/resolv.conf", `${dir}/guest/etc/resolv.conf`),
      bind("/etc/hostname", `${dir}/guest/etc/hostname`),
    ],
    linux: { namespaces: [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }, { type: "network", path: `/var/run/netns/${ns}` }] },
  };
}

function runsc(args, logFile) {
  const out = logFile ? fs.openSync(logFile, "a") : "pipe";
  const r = spawnSync(RUNSC, [`--root=${STATE}`, ...args], { stdio: ["ignore", out, logFile ? out : "pipe"] });
  if (logFile) fs.closeSync(out);
  if (r.status !== 0) throw new Error(`runsc ${args.join(" ")}: ${r.status} ${r.stderr?.toString() ?? ""}`);
  return r.stdout?.toString() ?? "";
}

async function boot(vm) {
  const t0 = performance.now();
  runsc([...FLAGS, "run", "--detach", `--bundle=${vm.dir}/bundle`, vm.id], `${vm.dir}/guest/runtime.log`);
  made.sandboxes.push(vm.id);
  await waitAgent(vm, 20_000);
  return ms(t0);
}

/** Polls the agent's socket until `version` answers (every ms, so the figure is the agent's). */
async function waitAgent(vm, limitMs) {
  const deadline = performance.now() + limitMs;
  for (;;) {
    try {
      return await vm.agent.call({ op: "version" }, "version", 2_000);
    } catch (err) {
      if (performance.now() > deadline) throw new Error(`agent of ${vm.id} did not answer: ${err.message}`);
      await sleep(1);
    }
  }
}

/** An exec through the agent (and so through its fork server), with a deadline. */
async function exec(vm, command, limitMs = 10_000) {
  const conn = await vm.agent.open({ op: "exec", command }, { eof: true });
  let stdout = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      conn.close();
      reject(new Error(`exec ${JSON.stringify(command)} in ${vm.id}: no exit within ${limitMs} ms`));
    }, limitMs);
    conn.on("stdout", (b) => (stdout += b.toString()));
    conn.on("json", (r) => {
      if (r.type === "exit") {
        clearTimeout(timer);
        conn.close();
        resolve({ code: r.code, stdout });
      } else if (r.type === "error") {
        clearTimeout(timer);
        reject(new Error(r.message));
      }
    });
    conn.once("close", () => reject(conn.closeError("closed")));
  });
}

/** ckpt.prepare, answered, and the agent's end of the connection closed. */
async function prepare(vm) {
  const t0 = performance.now();
  const conn = await vm.agent.open({ op: "ckpt.prepare" }, { eof: true });
  await new Promise((resolve, reject) => {
    conn.once("json", (r) => (r.type === "ok" ? undefined : reject(new Error(JSON.stringify(r)))));
    conn.once("close", resolve);
  });
  if (fs.existsSync(`${vm.run}/agent.sock`)) throw new Error("the socket is still there after ckpt.prepare");
  return ms(t0);
}

function checkpoint(vm, image) {
  fs.rmSync(image, { recursive: true, force: true });
  fs.mkdirSync(image, { recursive: true });
  const t0 = performance.now();
  runsc(["checkpoint", "--leave-running", "--compression=none", `--image-path=${image}`, vm.id]);
  return ms(t0);
}

/** The marker, then the first answered `version`: the re-listen latency as the host sees it. */
async function relisten(vm) {
  const t0 = performance.now();
  fs.writeFileSync(`${vm.run}/${MARKER}`, "");
  await waitAgent(vm, 20_000);
  return ms(t0);
}

/** A new VM from `src`'s image: its own netns, a copy of its upper dir, the marker waiting. */
async function restore(src, image, n, { marker = true } = {}) {
  const vm = makeVm(n, src.upper);
  if (marker) fs.writeFileSync(`${vm.run}/${MARKER}`, "");
  const t0 = performance.now();
  runsc([...FLAGS, "restore", "--detach", `--image-path=${image}`, `--bundle=${vm.dir}/bundle`, vm.id], `${vm.dir}/guest/runtime.log`);
  made.sandboxes.push(vm.id);
  const restoreMs = ms(t0);
  await waitAgent(vm, 20_000);
  const agentMs = ms(t0);
  await exec(vm, "true");
  return { vm, restoreMs, agentMs, firstExecMs: ms(t0) };
}

/**
 * Boot, then generations of checkpoint + restore, each restored copy the next one's source (the
 * spike's second-generation hang), with in every generation: a few execs through the fork
 * server, a command started in generation 0 and one started in each generation that keep
 * counting across every cycle (their host connections are dropped by ckpt.prepare, the
 * processes are not), and a PTY session opened in generation 0 that must still be listed running.
 */
async function generations(count) {
  let vm = makeVm(0);
  console.log(`boot ${await boot(vm)} ms`);
  const counter = await vm.agent.open({ op: "exec", command: "i=0; while :; do i=$((i+1)); echo $i > /tmp/ck15-count; echo $i; sleep 0.05; done" }, { eof: true });
  counter.on("close", () => undefined);
  const pty = await vm.agent.open({ op: "pty.open", cols: 80, rows: 24, slug: "keep" });
  pty.on("close", () => undefined);
  await sleep(300);
  for (let gen = 0; gen < count; gen++) {
    for (let i = 0; i < 3; i++) await exec(vm, `echo gen${gen}-${i} > /dev/null`);
    // A command started in this generation, its FIFOs opened after the last restore, running
    // (and writing to its stdout) across the next cycle.
    const late = await vm.agent.open({ op: "exec", command: `i=0; while :; do i=$((i+1)); echo $i > /tmp/ck15-late${gen}; echo $i; sleep 0.05; done` }, { eof: true });
    late.on("close", () => undefined);
    await sleep(200);
    const before = Number((await exec(vm, "cat /tmp/ck15-count")).stdout);
    const lateBefore = Number((await exec(vm, `cat /tmp/ck15-late${gen}`)).stdout);
    console.log(`gen ${gen}: prepare ${await prepare(vm)} ms, checkpoint ${checkpoint(vm, `${SCRATCH}/img${gen}`)} ms, relisten ${await relisten(vm)} ms`);
    await exec(vm, "true");
    let next;
    try {
      next = await restore(vm, `${SCRATCH}/img${gen}`, gen + 1);
    } catch (err) {
      const id = made.sandboxes.at(-1);
      fs.writeFileSync("/tmp/ck15-stacks.txt", runsc(["debug", "--stacks", id]));
      throw new Error(`gen ${gen + 1} failed (${err.message}); stacks in /tmp/ck15-stacks.txt; ps:\n${runsc(["ps", id])}`);
    }
    await sleep(200);
    const after = Number((await exec(next.vm, "cat /tmp/ck15-count")).stdout);
    const lateAfter = Number((await exec(next.vm, `cat /tmp/ck15-late${gen}`)).stdout);
    const sessions = (await next.vm.agent.call({ op: "pty.list" }, "sessions")).sessions;
    const keep = sessions.find((s) => s.slug === "keep");
    console.log(`gen ${gen + 1}: restore ${next.restoreMs} ms, agent ${next.agentMs} ms, first exec ${next.firstExecMs} ms; counter ${before} -> ${after}, gen ${gen}'s ${lateBefore} -> ${lateAfter}; pty "keep" running: ${keep?.running}`);
    if (!(after > before) || !(lateAfter > lateBefore) || !keep?.running) throw new Error(`gen ${gen + 1}: the counter or the PTY session did not come through`);
    destroyVm(vm);
    vm = next.vm;
  }
}

/** The engine's checkpoint (memory/checkpoint.ts) of `vm`, into fresh dirs under the scratch dir. */
function engineCheckpoint(vm, name) {
  const upperCopy = `${SCRATCH}/${name}-upper`;
  const out = { imageDir: `${SCRATCH}/${name}-img`, copyUpper: (upper) => copyLayer(upper, upperCopy), maxImageBytes: maxImageBytes(2048) };
  fs.rmSync(out.imageDir, { recursive: true, force: true });
  fs.rmSync(`${upperCopy}.partial`, { recursive: true, force: true });
  const source = { id: vm.id, runDir: vm.run, upperDir: vm.upper, prepare: () => prepare(vm) };
  // copyLayer leaves the copy under its temp name (the engine seals it; the lab uses it as is).
  return checkpointVm(RT, source, out).then((timings) => ({ imageDir: out.imageDir, upperCopy: `${upperCopy}.partial`, timings }));
}

/** A new VM from an engine checkpoint: restoreVm, then the first answered exec. */
async function engineRestore(ckpt, n) {
  const vm = makeVm(n, ckpt.upperCopy);
  const t0 = performance.now();
  await restoreVm(RT, ckpt.imageDir, { id: vm.id, bundleDir: `${vm.dir}/bundle`, runDir: vm.run, netnsPath: `/run/netns/ck15-ns${n}`, logFile: `${vm.dir}/guest/runtime.log` });
  made.sandboxes.push(vm.id);
  const restoreMs = ms(t0);
  await waitAgent(vm, 20_000);
  const agentMs = ms(t0);
  await exec(vm, "true");
  return { vm, restoreMs, agentMs, firstExecMs: ms(t0) };
}

/**
 * The writable layer's copy is the checkpoint's instant: a command appends 1, 2, 3, ... to a
 * file as fast as it can; in the restored copy the file must go on from where the restored
 * process's memory was, with no number twice and none missing. A file written just before the
 * checkpoint is in the copy, one written just after is not.
 */
async function consistency() {
  const vm = makeVm(0);
  console.log(`boot ${await boot(vm)} ms`);
  const writer = await vm.agent.open({ op: "exec", command: "i=0; while :; do i=$((i+1)); echo $i >> /root/seq; done" }, { eof: true });
  writer.on("close", () => undefined);
  await sleep(500);
  await exec(vm, "echo before > /root/before");
  const ckpt = await engineCheckpoint(vm, "c");
  await waitAgent(vm, 20_000);
  await exec(vm, "echo after > /root/after");
  console.log("checkpoint:", JSON.stringify(ckpt.timings));
  const copy = await engineRestore(ckpt, 1);
  await sleep(500);
  for (const [name, v] of [["original", vm], ["copy", copy.vm]]) {
    const check = await exec(v, "awk 'NR != $1 { print \"line \" NR \" holds \" $1; bad = 1; exit } END { if (!bad) print \"consecutive 1..\" NR }' /root/seq; ls /root/before /root/after 2>&1");
    console.log(`${name}: ${check.stdout.trim().replace(/\n/g, "; ")}`);
  }
}

async function measure(samples) {
  const rows = [];
  const src = makeVm(0);
  console.log(`boot ${await boot(src)} ms`);
  await exec(src, "true");
  for (let i = 0; i < samples; i++) {
    // Capsule's cycle: the engine's checkpoint (prepare, pause, save, layer copy, resume), the
    // agent answering again; a restore into a new VM and its first exec.
    const ckpt = await engineCheckpoint(src, "m");
    const t1 = performance.now();
    await waitAgent(src, 20_000);
    const relistenMs = ms(t1);
    // One `version` round trip once listening: what of relistenMs is the agent's answer itself.
    const t2 = performance.now();
    await src.agent.call({ op: "version" }, "version");
    const versionMs = ms(t2);
    const r = await engineRestore(ckpt, 10 + i);
    // Raw runsc on the same VM: a save of the deaf agent (runsc refuses a listening one), and a
    // restore of that image, timed alone.
    await prepare(src);
    const rawCkptMs = checkpoint(src, `${SCRATCH}/raw`);
    await relisten(src);
    const raw = makeVm(30 + i, ckpt.upperCopy);
    const t0 = performance.now();
    runsc([...FLAGS, "restore", "--detach", `--image-path=${SCRATCH}/raw`, `--bundle=${raw.dir}/bundle`, raw.id], `${raw.dir}/guest/runtime.log`);
    made.sandboxes.push(raw.id);
    const rawRestoreMs = ms(t0);
    rows.push({ ...ckpt.timings, relistenMs, versionMs, restoreMs: r.restoreMs, restoreToAgentMs: r.agentMs, restoreToFirstExecMs: r.firstExecMs, rawCkptMs, rawRestoreMs });
    console.log(JSON.stringify(rows.at(-1)));
    for (const vm of [r.vm, raw]) destroyVm(vm);
  }
  const keys = Object.keys(rows[0]);
  console.log("medians:", JSON.stringify(Object.fromEntries(keys.map((k) => [k, median(rows.map((r) => r[k]))]))));
  console.log(`image size: ${sh("du", ["-sh", `${SCRATCH}/m-img`]).trim()}`);
}

function destroyVm(vm) {
  spawnSync(RUNSC, [`--root=${STATE}`, "delete", "--force", vm.id], { stdio: "ignore" });
  made.sandboxes = made.sandboxes.filter((s) => s !== vm.id);
  for (const m of [`${vm.dir}/rootfs`, `${vm.dir}/guest`]) {
    spawnSync("umount", [m], { stdio: "ignore" });
    made.mounts = made.mounts.filter((x) => x !== m);
  }
  spawnSync("ip", ["link", "del", `ck15h${vm.n}`], { stdio: "ignore" });
  spawnSync("ip", ["netns", "del", vm.ns], { stdio: "ignore" });
  made.netns = made.netns.filter((x) => x !== vm.ns);
  fs.rmSync(vm.dir, { recursive: true, force: true });
}

function cleanup() {
  for (const id of made.sandboxes) spawnSync(RUNSC, [`--root=${STATE}`, "delete", "--force", id], { stdio: "ignore" });
  for (const m of made.mounts.reverse()) spawnSync("umount", ["-l", m], { stdio: "ignore" });
  for (const ns of made.netns) {
    spawnSync("ip", ["link", "del", `ck15h${ns.slice("ck15-ns".length)}`], { stdio: "ignore" });
    spawnSync("ip", ["netns", "del", ns], { stdio: "ignore" });
  }
  fs.rmSync(SCRATCH, { recursive: true, force: true });
}

try {
  if (opt.scenario === "generations") await generations(Number(opt.samples));
  else if (opt.scenario === "measure") await measure(Number(opt.samples));
  else if (opt.scenario === "consistency") await consistency();
  else throw new Error(`unknown scenario ${opt.scenario}`);
} catch (err) {
  for (const d of fs.readdirSync(SCRATCH).filter((x) => x.startsWith("vm"))) {
    const logFile = `${SCRATCH}/${d}/guest/runtime.log`;
    if (fs.existsSync(logFile)) console.log(`--- ${d} runtime.log:\n${fs.readFileSync(logFile, "utf8").slice(-3000)}`);
  }
  throw err;
} finally {
  if (opt.keep) console.log(`kept ${SCRATCH}`);
  else cleanup();
}

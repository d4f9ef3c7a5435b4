/**
 * Memory snapshots and memory forks through the engine's API (issue 15), on real sandboxes:
 * processes counting in memory count on in a copy from where the capture was (not from 1), a
 * file held open for appending goes on being appended to, each copy has its own hostname,
 * /etc/hosts, address and writable layer, a Node REPL's variable and a listening TCP server come
 * through, the source runs on, and the refusals are the documented ones. No timed assertions:
 * "counts on" is a value read twice, the second bigger, polled within a named limit.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Engine, ErrorCode, type EngineOptions, type PtyAttachment } from "../src/index.js";
import { AGENT_BUNDLE, IMAGES_DIR, RUNSC_OPTIONS, countResources, destroyAll, useEngine } from "../test-support/harness.js";
import { turnHostile } from "../test-support/hostile-agent.js";

/** A counter in a shell's memory, written out each round, and the same number appended to a file the loop holds open. */
const COUNTER = "nohup sh -c 'i=0; exec 3>>/root/append; while true; do i=$((i+1)); echo $i > /root/count.new; mv /root/count.new /root/count; echo $i >&3; sleep 0.05; done' >/dev/null 2>&1 &";
/** A TCP server in the VM's memory: it answers each connection with how many it answered before. */
const SERVER = `nohup /.capsule/bin/node -e 'let n=0; require("net").createServer((s)=>s.end("served "+(n++)+"\\n")).listen(7000)' >/dev/null 2>&1 &`;
/**
 * An epoll user in perl (the image's one scripting language; syscall numbers are x86-64's). Two
 * pipes are registered (data 111 and 222), both made ready and drained, then polled once, so
 * gVisor's epoll checks both and finds neither ready; then the first is deleted from the epoll
 * instance and closed. The loop logs every event it polls, and writes a byte to the second pipe
 * whenever /root/poke appears. A runsc without upstream's epoll fix (5d857245b, backported by
 * scripts/build-runsc.sh) keeps the deleted registration through a restore and reports it again:
 * `event 111` in a copy, the phantom that crashed Claude Code's Bun in memory forks.
 */
const EPOLL_USER = String.raw`use strict; use warnings;
my ($create, $ctl, $wait) = (291, 233, 232);
my $ep = syscall($create, 0); die "epoll_create1: $!" if $ep < 0;
pipe(my $ra, my $wa) or die; pipe(my $rb, my $wb) or die;
sub add { my ($fd, $data) = @_; my $ev = pack("LQ", 1, $data); syscall($ctl, $ep, 1, $fd, $ev) == 0 or die "epoll_ctl add: $!"; }
sub events { my $buf = "\0" x 96; my $n = syscall($wait, $ep, $buf, 8, 0); die "epoll_wait: $!" if $n < 0; map { (unpack("LQ", substr($buf, 12 * $_, 12)))[1] } 0 .. $n - 1 }
add(fileno($ra), 111); add(fileno($rb), 222);
syswrite($wa, "x"); syswrite($wb, "x"); sysread($ra, my $x, 1); sysread($rb, my $y, 1);
my @none = events();
my $gone = pack("LQ", 0, 0);
syscall($ctl, $ep, 2, fileno($ra), $gone) == 0 or die "epoll_ctl del: $!";
close($ra); close($wa);
open(my $log, ">>", "/root/epoll.log") or die; select((select($log), $| = 1)[0]);
print $log "polled @none\n";
while (1) {
  if (-e "/root/poke") { unlink "/root/poke"; syswrite($wb, "y"); }
  for my $d (events()) { print $log "event $d\n"; sysread($rb, my $c, 1) if $d == 222; }
  select(undef, undef, undef, 0.05);
}
`;
/** How long a value that should move may take to move on this busy host. */
const MOVE_LIMIT_MS = 20_000;

async function count(engine: Engine, id: string, file = "/root/count"): Promise<number> {
  const text = (await engine.guest.readFile(id, file)).toString("utf8").trim();
  return Number(text.split("\n").at(-1));
}

/** Resolves with the first value of `read` above `floor`; fails after MOVE_LIMIT_MS. */
async function movesPast(read: () => Promise<number>, floor: number, what: string): Promise<number> {
  const deadline = Date.now() + MOVE_LIMIT_MS;
  for (;;) {
    const v = await read().catch(() => Number.NaN);
    if (v > floor) return v;
    if (Date.now() > deadline) throw new Error(`${what} did not move past ${floor} within ${MOVE_LIMIT_MS} ms (last ${v})`);
    await sleep(50);
  }
}

async function sh(engine: Engine, id: string, command: string): Promise<string> {
  const r = await engine.guest.exec(id, { command });
  assert.equal(r.exitCode, 0, `${command}: ${r.stderr}`);
  return r.stdout;
}

/** What a TCP connection to the VM's port reads until the server closes it. */
async function tcpRead(engine: Engine, id: string, port: number): Promise<string> {
  const sock = await engine.guest.connectTcp(id, port);
  let got = "";
  sock.on("data", (b: Buffer) => (got += b.toString("utf8")));
  const ended = new Promise((resolve, reject) => {
    sock.once("end", resolve);
    sock.once("error", reject);
  });
  sock.resume();
  await ended;
  sock.destroy();
  return got;
}

function screen(a: PtyAttachment): { waitFor(re: RegExp): Promise<void> } {
  let text = "";
  a.on("data", (b: Buffer) => (text += b.toString("utf8")));
  return {
    async waitFor(re) {
      const deadline = Date.now() + MOVE_LIMIT_MS;
      while (!re.test(text)) {
        if (Date.now() > deadline) throw new Error(`the PTY never showed ${re}; it showed:\n${text.slice(-1000)}`);
        await sleep(20);
      }
    },
  };
}

describe("memory snapshots", () => {
  const env = useEngine();
  const ready = (ctx: { skip(why: string): void }): boolean => {
    const gap = env.skip();
    if (gap) {
      ctx.skip(gap);
      return false;
    }
    if (!env.get().engine.features.checkpoint) {
      ctx.skip(`runsc cannot checkpoint on the ${env.get().engine.features.network} network stack`);
      return false;
    }
    return true;
  };

  it("a VM created from a memory snapshot counts on from the capture, as itself; memory: false boots the disk only", async (ctx) => {
    if (!ready(ctx)) return;
    const { engine, dataDir } = env.get();
    const src = await engine.createVm();
    await sh(engine, src.id, COUNTER);
    await movesPast(() => count(engine, src.id), 3, "the source's counter");
    assert.equal(await engine.canCheckpoint(src.id), true);

    const snap = await engine.snapshotVm(src.id, { memory: true, name: "counting" });
    ctx.diagnostic(`capture phases (ms): ${JSON.stringify(engine.capturePhases(src.id))}`);
    assert.ok(snap.memory, "a memory snapshot");
    assert.equal(snap.memory.network, "netstack");
    assert.equal(snap.memory.createdFromState, "running");
    assert.ok(snap.memory.bytes > 0 && snap.sizeBytes > snap.memory.bytes, `sizeBytes ${snap.sizeBytes} counts the layer and the ${snap.memory.bytes}-byte image`);
    // The layer is the disk at the image's instant: what the copy's counter must count on from.
    const layer = path.join(dataDir, "layers", snap.layers[0] ?? "");
    const atCapture = Number((await fs.readFile(path.join(layer, "root", "count"), "utf8")).trim());
    assert.ok(atCapture > 3);

    const copy = await engine.createVm({ snapshotId: snap.id });
    ctx.diagnostic(`restore phases (ms): ${JSON.stringify(engine.bootPhases(copy.id))}`);
    assert.equal(copy.restoredFrom, snap.id);
    assert.equal(copy.snapshotId, snap.id);
    const first = await count(engine, copy.id);
    assert.ok(first >= atCapture, `the copy's counter went on from ${atCapture} (a fresh loop would start at 1): ${first}`);
    await movesPast(() => count(engine, copy.id), first, "the copy's counter");
    // The file the loop holds open for appending: appended to in the copy, through its own upper dir.
    const appended = await movesPast(() => count(engine, copy.id, "/root/append"), atCapture, "the copy's appended file");
    assert.ok(appended >= atCapture);
    await fs.access(path.join(dataDir, "vms", copy.id, "disk", "upper", "root", "append"));

    // Its own identity: hostname (the UTS name and /etc/hostname), /etc/hosts, address.
    assert.equal(await sh(engine, copy.id, "hostname; cat /etc/hostname"), `${copy.id}\n${copy.id}\n`);
    assert.match(await sh(engine, copy.id, "cat /etc/hosts"), new RegExp(`^${copy.ip?.replace(/\./g, "\\.")}\\t${copy.id}$`, "m"));
    assert.notEqual(copy.ip, src.ip);
    assert.equal(await sh(engine, src.id, "hostname"), `${src.id}\n`);
    // The source ran on, and the two disks are apart.
    await movesPast(() => count(engine, src.id), atCapture, "the source's counter");
    await sh(engine, copy.id, "echo copy > /root/mine");
    assert.equal(await engine.guest.exists(src.id, "/root/mine"), false);

    // memory: false is a fresh boot on the snapshot's disk: the file is there, its writer is not.
    const disk = await engine.createVm({ snapshotId: snap.id, memory: false });
    assert.equal(disk.restoredFrom, undefined);
    assert.ok((await count(engine, disk.id)) >= atCapture);
    assert.doesNotMatch(await sh(engine, disk.id, "ps -eo args"), /count\.new/);

    // A second generation: a memory snapshot of the copy, restored.
    const snap2 = await engine.snapshotVm(copy.id, { memory: true });
    const gen2 = await engine.createVm({ snapshotId: snap2.id });
    const gen2First = await count(engine, gen2.id);
    await movesPast(() => count(engine, gen2.id), gen2First, "the second generation's counter");
    assert.equal(await sh(engine, gen2.id, "hostname"), `${gen2.id}\n`);

    // Images go with their snapshot records.
    for (const vm of [copy, disk, gen2]) await engine.deleteVm(vm.id, { wait: true });
    await engine.deleteSnapshot(snap.id);
    await engine.deleteSnapshot(snap2.id);
    assert.deepEqual(await fs.readdir(path.join(dataDir, "memory")), []);
  });

  it("the next create from the snapshot restored last takes a target made ahead: as fresh as a cold copy, its own id, address and disk; other limits restore cold; deleting the snapshot removes it", async (ctx) => {
    if (!ready(ctx)) return;
    const { engine, dataDir } = env.get();
    const src = await engine.createVm();
    await sh(engine, src.id, COUNTER);
    await movesPast(() => count(engine, src.id), 3, "the source's counter");
    const snap = await engine.snapshotVm(src.id, { memory: true });
    // Handed back listening: the next request finds the agent's socket, without a retry.
    assert.ok(existsSync(path.join(dataDir, "vms", src.id, "guest", "run", "agent.sock")), "the source's agent listens again when the snapshot returns");
    const atCapture = Number((await fs.readFile(path.join(dataDir, "layers", snap.layers[0] ?? "", "root", "count"), "utf8")).trim());
    // A create at once: its target is not made yet (PREPARE_AFTER_MS), or it would take it.
    const cold = await engine.createVm({ snapshotId: snap.id });

    const madeFor = async (snapshotId: string, not?: string) => {
      for (const deadline = Date.now() + MOVE_LIMIT_MS; ; await sleep(50)) {
        const t = engine.preparedRestore();
        if (t?.made && t.snapshotId === snapshotId && t.vmId !== not) return t;
        if (Date.now() > deadline) throw new Error(`no restore target was made for ${snapshotId}: ${JSON.stringify(t)}`);
      }
    };
    const target = await madeFor(snap.id);
    // Made: disk, netns, veth and sandbox exist, but nobody lists it.
    const made = await countResources(dataDir, [target.vmId]);
    assert.ok(made.netns === 1 && made.veths === 1 && (made.runtimeProcs ?? 0) > 0 && made.vmDirs === 1, `the target's resources: ${JSON.stringify(made)}`);
    assert.ok(!(await engine.listVms()).some((v) => v.id === target.vmId), "a target is not listed");

    const t0 = performance.now();
    const taken = await engine.createVm({ snapshotId: snap.id, name: "taken", owner: "test:taken" });
    ctx.diagnostic(`create from a target made ahead: ${Math.round(performance.now() - t0)} ms; phases ${JSON.stringify(engine.bootPhases(taken.id))}`);
    assert.equal(taken.id, target.vmId, "the create took the target");
    assert.equal(taken.state, "running");
    assert.equal(taken.name, "taken");
    assert.equal(taken.owner, "test:taken");
    assert.equal(taken.restoredFrom, snap.id);
    assert.ok((await engine.listVms()).some((v) => v.id === taken.id && v.owner === "test:taken"));
    // The processes restored, counting on from the capture, in a VM that is itself.
    const first = await count(engine, taken.id);
    assert.ok(first >= atCapture, `the counter went on from ${atCapture}: ${first}`);
    await movesPast(() => count(engine, taken.id), first, "the taken copy's counter");
    assert.equal(await sh(engine, taken.id, "hostname; cat /etc/hostname"), `${taken.id}\n${taken.id}\n`);
    assert.match(await sh(engine, taken.id, "cat /etc/hosts"), new RegExp(`^${taken.ip?.replace(/\./g, "\\.")}\\t${taken.id}$`, "m"));
    assert.equal(new Set([src.ip, cold.ip, taken.ip]).size, 3, "its own address");
    await sh(engine, taken.id, "echo taken > /root/mine");
    for (const id of [src.id, cold.id]) assert.equal(await engine.guest.exists(id, "/root/mine"), false);

    // A new target follows; a create with other limits does not take it (restores cold), and it stays.
    const next = await madeFor(snap.id, taken.id);
    const bigger = await engine.createVm({ snapshotId: snap.id, limits: { memoryMb: src.limits.memoryMb + 256 } });
    assert.notEqual(bigger.id, next.vmId);
    assert.equal(bigger.limits.memoryMb, src.limits.memoryMb + 256);
    assert.ok((await count(engine, bigger.id)) >= atCapture);
    assert.equal(engine.preparedRestore()?.vmId, next.vmId, "the target waits for a create it fits");

    // A new memory snapshot gets the target, before any create from it: the first one takes it.
    const snap2 = await engine.snapshotVm(src.id, { memory: true });
    const second = await madeFor(snap2.id);
    const first2 = await engine.createVm({ snapshotId: snap2.id });
    assert.equal(first2.id, second.vmId, "the first create from a new memory snapshot took its target");
    assert.ok((await count(engine, first2.id)) >= atCapture);
    await engine.deleteVm(first2.id, { wait: true });
    await engine.deleteSnapshot(snap2.id);
    await engine.settled();
    assert.deepEqual(await countResources(dataDir, [next.vmId, second.vmId, first2.id]), { mounts: 0, vmDirs: 0, netns: 0, veths: 0, runtimeProcs: 0, nftElements: 0, loops: 0, cgroups: 0 });

    // Deleting the snapshot removes its target and everything it held.
    for (const vm of [cold, taken, bigger]) await engine.deleteVm(vm.id, { wait: true });
    await engine.deleteSnapshot(snap.id);
    await engine.settled();
    assert.equal(engine.preparedRestore(), undefined);
    assert.deepEqual(await countResources(dataDir, [next.vmId]), { mounts: 0, vmDirs: 0, netns: 0, veths: 0, runtimeProcs: 0, nftElements: 0, loops: 0, cgroups: 0 });
    assert.deepEqual(await fs.readdir(path.join(dataDir, "memory")), []);
  });

  it("forkVm({count: 3, memory: true}): three copies count on their own, with their own names, addresses and disks; a REPL's variable and a TCP server come through", async (ctx) => {
    if (!ready(ctx)) return;
    const { engine, dataDir } = env.get();
    const src = await engine.createVm();
    await sh(engine, src.id, COUNTER);
    await sh(engine, src.id, SERVER);
    const repl = await engine.guest.ptyOpen(src.id, { command: ["/.capsule/bin/node"], slug: "repl" });
    const s = screen(repl);
    await s.waitFor(/> /);
    await repl.write("var secret = 6 * 7\r");
    await s.waitFor(/undefined/);
    repl.detach();
    await movesPast(() => count(engine, src.id), 3, "the source's counter");
    assert.equal(await tcpRead(engine, src.id, 7000), "served 0\n");

    const t0 = performance.now();
    const forks = await engine.forkVm(src.id, { count: 3, memory: true });
    ctx.diagnostic(`fork of 3 with memory: ${Math.round(performance.now() - t0)} ms; capture ${JSON.stringify(engine.capturePhases(src.id))}; restores ${JSON.stringify(forks.map((f) => engine.bootPhases(f.id)))}`);
    assert.equal(forks.length, 3);
    assert.equal(new Set(forks.map((f) => f.ip)).size, 3);
    assert.ok(!forks.some((f) => f.ip === src.ip));
    // The captured layer is shared by reference: no new layer per copy.
    const layers = await engine.layerIds();
    assert.equal(layers.length, 1, `one captured layer for all copies: ${layers.join(", ")}`);
    assert.deepEqual(await fs.readdir(path.join(dataDir, "memory")), [], "a fork keeps no image once its copies run");

    for (const f of forks) {
      assert.equal(f.restoredFrom, src.id);
      const first = await count(engine, f.id);
      await movesPast(() => count(engine, f.id), first, `fork ${f.id}'s counter`);
      assert.equal(await sh(engine, f.id, "hostname"), `${f.id}\n`);
      // The server's count is in memory: the source answered once before the fork, so every copy answers 1.
      assert.equal(await tcpRead(engine, f.id, 7000), "served 1\n");
      const [session] = await engine.guest.ptyList(f.id);
      assert.ok(session?.running, "the REPL's session came through");
      const a = await engine.guest.ptyAttach(f.id, session.sessionId);
      const fs2 = screen(a);
      await a.write("secret + 1\r");
      await fs2.waitFor(/43/);
      a.detach();
    }
    await sh(engine, forks[0]!.id, "echo one > /root/only-in-first");
    for (const id of [src.id, forks[1]!.id, forks[2]!.id]) assert.equal(await engine.guest.exists(id, "/root/only-in-first"), false);
    // Counting on their own: each copy's counter moves while another's is read.
    const [c0, c1] = [await count(engine, forks[0]!.id), await count(engine, forks[1]!.id)];
    await movesPast(() => count(engine, forks[1]!.id), c1, "the second copy's counter");
    await movesPast(() => count(engine, forks[0]!.id), c0, "the first copy's counter");
    assert.equal(await tcpRead(engine, src.id, 7000), "served 1\n", "the source's server runs on, apart");
  });

  it("a paused VM's memory snapshot leaves it paused; refusals: stopped (VM_INVALID_STATE), runc (UNSUPPORTED), auto falls back to the disk", async (ctx) => {
    if (!ready(ctx)) return;
    const { engine } = env.get();
    const src = await engine.createVm();
    await sh(engine, src.id, COUNTER);
    await movesPast(() => count(engine, src.id), 3, "the source's counter");
    await engine.pauseVm(src.id);
    const snap = await engine.snapshotVm(src.id, { memory: true });
    assert.equal(snap.memory?.createdFromState, "paused");
    assert.equal((await engine.getVm(src.id)).state, "paused");
    const copy = await engine.createVm({ snapshotId: snap.id });
    const first = await count(engine, copy.id);
    await movesPast(() => count(engine, copy.id), first, "the copy's counter");
    await engine.startVm(src.id);
    const resumed = await count(engine, src.id);
    await movesPast(() => count(engine, src.id), resumed, "the resumed source's counter");

    await engine.stopVm(src.id);
    assert.equal(await engine.canCheckpoint(src.id), false);
    await assert.rejects(engine.snapshotVm(src.id, { memory: true }), { code: ErrorCode.InvalidState });
    await assert.rejects(engine.forkVm(src.id, { memory: true }), { code: ErrorCode.InvalidState });
    const auto = await engine.snapshotVm(src.id, { memory: "auto" });
    assert.equal(auto.memory, undefined, "auto on a stopped VM: a disk snapshot");

    const runc = await engine.createVm({ runtime: "runc" }).catch(() => undefined);
    if (runc) {
      assert.equal(await engine.canCheckpoint(runc.id), false);
      await assert.rejects(engine.snapshotVm(runc.id, { memory: true }), { code: ErrorCode.Unsupported });
      assert.equal((await engine.snapshotVm(runc.id, { memory: "auto" })).memory, undefined);
      await assert.rejects(engine.createVm({ snapshotId: snap.id, runtime: "runc" }), { code: ErrorCode.Unsupported });
    } else ctx.diagnostic("runc cannot run VMs here: its refusal is covered by the unit test");
  });

  it("a fork whose image is removed while its copies' targets are being made ahead fails and leaves no target, netns, mount or sandbox", async (ctx) => {
    if (!ready(ctx)) return;
    const { engine, dataDir } = env.get();
    const src = await engine.createVm();
    await sh(engine, src.id, COUNTER);
    await movesPast(() => count(engine, src.id), 2, "the counter");
    const vmsBefore = new Set(await fs.readdir(path.join(dataDir, "vms")));
    const layersBefore = await fs.readdir(path.join(dataDir, "layers")).catch(() => []);
    const copies = new Set<string>();
    // The image is removed once the first copy's record is there (the layer is sealed, the
    // copies' targets are being made) and runsc has begun writing it (before, runsc would make
    // the directory again): a restore comes only after a target's mounts, network and `runsc
    // create`, by then the image is gone, and the save or every restore fails.
    let removed = false;
    let settled = false;
    const watch = (async () => {
      const deadline = Date.now() + MOVE_LIMIT_MS;
      while (!settled && Date.now() < deadline) {
        for (const v of await fs.readdir(path.join(dataDir, "vms"))) if (!vmsBefore.has(v)) copies.add(v);
        if (copies.size > 0 && !removed) {
          for (const img of await fs.readdir(path.join(dataDir, "memory")).catch(() => [] as string[])) {
            const dir = path.join(dataDir, "memory", img);
            if (!img.endsWith(".partial") || (await fs.readdir(dir).catch(() => [])).length === 0) continue;
            await fs.rm(dir, { recursive: true, force: true });
            removed = true;
          }
        }
        await sleep(1);
      }
    })();
    await assert.rejects(engine.forkVm(src.id, { memory: true, count: 3 }).finally(() => (settled = true)));
    await watch;
    assert.ok(removed, "the fork had made its copies' records (and the image was removed)");
    assert.ok(!(await engine.listVms()).some((v) => copies.has(v.id)), "no copy is listed");
    assert.deepEqual(await countResources(dataDir, [...copies]), { mounts: 0, vmDirs: 0, netns: 0, veths: 0, runtimeProcs: 0, nftElements: 0, loops: 0, cgroups: 0 });
    assert.ok(!(await fs.readdir(path.join(dataDir, "memory")).catch(() => [] as string[])).some((e) => e.endsWith(".partial")), "no partial image");
    assert.deepEqual(await fs.readdir(path.join(dataDir, "layers")).catch(() => []), layersBefore, "no layer, partial or whole");
    await movesPast(() => count(engine, src.id), await count(engine, src.id), "the source's counter");
    // The next fork is whole.
    const [copy] = await engine.forkVm(src.id, { memory: true, count: 1 });
    assert.ok(copy);
    await movesPast(() => count(engine, copy.id), 0, "the copy's counter");
  });

  it("a guest that answers ckpt.prepare with garbage, or not at all: a coded error, the VM runs on, no files left", async (ctx) => {
    if (!ready(ctx)) return;
    const { engine, dataDir } = env.get();
    const [garbage, silent] = await Promise.all([engine.createVm(), engine.createVm()]);
    const [snapsBefore, layersBefore, imagesBefore] = [await engine.listSnapshots(), await engine.layerIds(), await fs.readdir(path.join(dataDir, "memory")).catch(() => [])];
    for (const [vm, ckpt, code] of [
      [garbage, "bad-json", ErrorCode.AgentProtocolError],
      [silent, "silent", ErrorCode.AgentTimeout],
    ] as const) {
      await sh(engine, vm.id, COUNTER);
      await movesPast(() => count(engine, vm.id), 2, "the counter");
      // Root in the VM answers `version` like a current agent, then ckpt.prepare its own way.
      await turnHostile(engine, vm.id, { version: "version-current", ckpt });
      await assert.rejects(engine.snapshotVm(vm.id, { memory: true }), { code });
      // (A silent guest costs the agent's reply deadline per call: one is enough.)
      if (ckpt === "bad-json") await assert.rejects(engine.forkVm(vm.id, { memory: true, count: 2 }), { code });
      assert.equal((await engine.getVm(vm.id)).state, "running");
      // Its agent is the listener's now: the counter is read from the host side of its disk.
      const counter = path.join(dataDir, "vms", vm.id, "disk", "upper", "root", "count");
      const read = async () => Number((await fs.readFile(counter, "utf8")).trim());
      await movesPast(read, await read(), `${ckpt}: the VM's counter`);
    }
    assert.deepEqual(await engine.listSnapshots(), snapsBefore);
    assert.deepEqual(await fs.readdir(path.join(dataDir, "memory")).catch(() => []), imagesBefore, "no image, partial or whole");
    assert.deepEqual(await fs.readdir(path.join(dataDir, "layers")).catch(() => []), layersBefore, "no layer, partial or whole");
  });

  it("the same data dir opened on hostinet: its netstack VM and memory snapshot are UNSUPPORTED, memory: false still boots", async (ctx) => {
    if (!ready(ctx)) return;
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-memnet-"));
    const opts: EngineOptions = { dataDir, imagesDir: IMAGES_DIR, agentBundleDir: AGENT_BUNDLE, ...RUNSC_OPTIONS, network: "netstack" };
    let engine = await Engine.open(opts);
    try {
      const src = await engine.createVm();
      const snap = await engine.snapshotVm(src.id, { memory: true });
      await engine.close();
      engine = await Engine.open({ ...opts, network: "hostinet" });
      assert.deepEqual(engine.recovery.adopted, [src.id], "the netstack sandbox runs on");
      assert.equal(await engine.canCheckpoint(src.id), false);
      await assert.rejects(engine.snapshotVm(src.id, { memory: true }), (err: Error & { code?: string }) => err.code === ErrorCode.Unsupported && /hostinet/.test(err.message));
      await assert.rejects(engine.createVm({ snapshotId: snap.id }), { code: ErrorCode.Unsupported });
      const disk = await engine.createVm({ snapshotId: snap.id, memory: false });
      assert.equal(disk.restoredFrom, undefined);
      assert.equal(await sh(engine, disk.id, "hostname"), `${disk.id}\n`);
      // Booted on hostinet, it stays uncheckpointable when netstack is back.
      await engine.close();
      engine = await Engine.open(opts);
      assert.equal(await engine.canCheckpoint(disk.id), false);
      await assert.rejects(engine.snapshotVm(disk.id, { memory: true }), (err: Error & { code?: string }) => err.code === ErrorCode.Unsupported && /started on hostinet/.test(err.message));
      assert.equal(await engine.canCheckpoint(src.id), true);
    } finally {
      await destroyAll({ engine, dataDir }).catch(() => undefined);
    }
  });

  it("epoll survives a restore: a copy polls no event of a descriptor its process closed before the capture (runsc with upstream's epoll fix)", async (ctx) => {
    if (!ready(ctx)) return;
    const { engine } = env.get();
    const src = await engine.createVm();
    await engine.guest.writeFile(src.id, "/root/epoll.pl", EPOLL_USER);
    await sh(engine, src.id, "nohup perl /root/epoll.pl >/root/epoll.err 2>&1 &");
    const log = async (id: string) => (await engine.guest.readFile(id, "/root/epoll.log").catch(() => Buffer.alloc(0))).toString("utf8");
    const until = async (id: string, re: RegExp, what: string) => {
      const deadline = Date.now() + MOVE_LIMIT_MS;
      while (!re.test(await log(id))) {
        if (Date.now() > deadline) throw new Error(`${what}: no ${re} within ${MOVE_LIMIT_MS} ms; log:\n${await log(id)}${await sh(engine, id, "cat /root/epoll.err")}`);
        await sleep(50);
      }
    };
    // Not poked before the capture: a new event on the second pipe would unlink the stale entry.
    await until(src.id, /^polled \n/m, "the epoll user's first poll");
    const [copy] = await engine.forkVm(src.id, { count: 1, memory: true });
    assert.ok(copy);
    // A poke in the copy is answered, so its loop runs and polls after the restore...
    await sh(engine, copy.id, "touch /root/poke");
    await until(copy.id, /^event 222$/m, "the copy's event on the open pipe");
    await sh(engine, src.id, "touch /root/poke");
    await until(src.id, /^event 222$/m, "the source's event on the open pipe");
    // ...and neither polled the closed one.
    assert.doesNotMatch(await log(copy.id), /event 111/, "the copy polled an event of the descriptor closed before the capture");
    assert.doesNotMatch(await log(src.id), /event 111/);
    await engine.deleteVm(copy.id, { wait: true });
    await engine.deleteVm(src.id, { wait: true });
  });
});

import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Engine, RECOVERY_PROBE_BUDGET_MS, type EngineOptions } from "../src/index.js";
import { AGENT_BUNDLE, IMAGES_DIR, RUNTIME, RUNSC_OPTIONS, countResources, destroyAll, hostGap } from "../test-support/harness.js";
import { freezeContainer } from "../src/runtime/cgroups.js";
import { turnHostile } from "../test-support/hostile-agent.js";

describe("recovery at start-up", () => {
  let dataDir = "";
  let opts: EngineOptions = {};
  let gap: string | undefined;
  const engines: Engine[] = [];
  const open = async () => {
    const e = await Engine.open(opts);
    engines.push(e);
    return e;
  };

  before(async () => {
    gap = await hostGap();
    if (gap) {
      if (process.env.CI) throw new Error(gap);
      return;
    }
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-recovery-"));
    opts = { dataDir, imagesDir: IMAGES_DIR, agentBundleDir: AGENT_BUNDLE, runtime: RUNTIME, ...RUNSC_OPTIONS };
  });
  after(async () => {
    if (!dataDir) return;
    // Only the newest engine holds the data dir; it deletes every VM, pass or fail.
    const last = engines.at(-1) ?? (await Engine.open(opts));
    await destroyAll({ engine: last, dataDir });
  });

  it("VMs whose agent socket root replaced cannot stop open(): they are lost with a reason; the others are adopted", async (ctx) => {
    if (gap) return ctx.skip(gap);
    const first = await open();
    const healthy = (await first.createVm()).id;
    const garbage = (await first.createVm()).id;
    const silent = (await first.createVm()).id;
    const wrongProtocol = (await first.createVm()).id;
    await first.guest.writeFile(healthy, "/srv/keep", "healthy-data");
    await first.guest.writeFile(garbage, "/srv/keep", "garbage-data");
    // Root in each VM replaces the agent's socket with a listener that answers `version` with a
    // frame that is not JSON, with nothing at all, or with another protocol.
    await turnHostile(first, garbage, { version: "bad-json" });
    await turnHostile(first, silent, { version: "silent" });
    await turnHostile(first, wrongProtocol);

    // A crash: the engine object is dropped without close(), its lock file left behind.
    const t0 = performance.now();
    const second = await open();
    const openMs = performance.now() - t0;
    ctx.diagnostic(`open() with 3 hostile VMs and 1 healthy: ${Math.round(openMs)} ms (probe budget ${RECOVERY_PROBE_BUDGET_MS} ms)`);
    // The silent VM costs one budget (probes run side by side); tearing the lost sandboxes down costs a few seconds more.
    assert.ok(openMs < RECOVERY_PROBE_BUDGET_MS + 15_000, `open() took ${Math.round(openMs)} ms`);

    const report = second.recovery;
    assert.deepEqual(report.adopted, [healthy]);
    assert.deepEqual(report.lost.map((l) => l.id).sort(), [garbage, silent, wrongProtocol].sort());
    assert.deepEqual(report.failed, []);

    const reasons = Object.fromEntries(await Promise.all([garbage, silent, wrongProtocol].map(async (id) => [id, await second.getVm(id)] as const)));
    ctx.diagnostic(`lost reasons: ${[garbage, silent, wrongProtocol].map((id) => reasons[id]?.lostReason).join(" | ")}`);
    for (const id of [garbage, silent, wrongProtocol]) assert.equal(reasons[id]?.state, "lost");
    assert.match(reasons[garbage]?.lostReason ?? "", /not valid JSON/);
    assert.match(reasons[silent]?.lostReason ?? "", /did not answer/);
    assert.match(reasons[wrongProtocol]?.lostReason ?? "", /protocol 999/);
    // Lost VMs are stopped: no sandbox process, no netns, no veth, no firewall element, no mount, no loop device.
    const held = await countResources(dataDir, [garbage, silent, wrongProtocol]);
    assert.deepEqual({ ...held, vmDirs: 0 }, { mounts: 0, vmDirs: 0, netns: 0, veths: 0, runtimeProcs: 0, nftElements: 0, loops: 0, cgroups: 0 });
    await assert.rejects(second.guest.exec(garbage, { command: "true" }), { code: "VM_INVALID_STATE" });

    // The healthy VM was adopted as it was and still runs commands.
    assert.equal((await second.getVm(healthy)).state, "running");
    assert.equal((await second.guest.exec(healthy, { command: "cat /srv/keep" })).stdout, "healthy-data");

    // A lost VM starts again on a fresh agent, its disk intact; the reason goes with the state.
    const restarted = await second.startVm(garbage);
    assert.equal(restarted.state, "running");
    assert.equal(restarted.lostReason, undefined);
    assert.equal((await second.guest.exec(garbage, { command: "cat /srv/keep" })).stdout, "garbage-data");

    // And a third open adopts what is now healthy, keeping the lost ones lost.
    const third = await open();
    assert.deepEqual(third.recovery.adopted.sort(), [healthy, garbage].sort());
    assert.equal((await third.getVm(silent)).state, "lost");
    assert.deepEqual(third.recovery.lost, []);
  });

  it("a VM whose agent speaks an older protocol is restarted with the current agent, not failed", async (ctx) => {
    if (gap) return ctx.skip(gap);
    let engine = engines.at(-1) ?? (await open());
    const vm = (await engine.createVm()).id;
    await engine.guest.writeFile(vm, "/srv/keep", "older-data");
    await engine.guest.exec(vm, { command: "sleep 1000 >/dev/null 2>&1 &" });
    await turnHostile(engine, vm, { version: "version-older" });

    engine = await open();
    assert.deepEqual(engine.recovery.restarted, [vm]);
    assert.deepEqual(engine.recovery.lost.filter((l) => l.id === vm), []);
    const info = await engine.getVm(vm);
    assert.equal(info.state, "running");
    // The current agent answers (the old one and everything it ran are gone); the disk is kept.
    assert.equal((await engine.guest.exec(vm, { command: "cat /srv/keep" })).stdout, "older-data");
    assert.equal((await engine.guest.exec(vm, { command: "pgrep -x sleep || echo none" })).stdout, "none\n");
    await engine.deleteVm(vm, { wait: true });
  });

  it("a VM a crash left frozen during a snapshot's copy is thawed and adopted, its processes still running", async (ctx) => {
    if (gap) return ctx.skip(gap);
    let engine = engines.at(-1) ?? (await open());
    const vm = (await engine.createVm()).id;
    await engine.guest.exec(vm, { command: "sleep 1000 >/dev/null 2>&1 &" });
    // What the snapshot's copy does, left undone as a crash would leave it.
    if (!(await freezeContainer(vm))) {
      await engine.deleteVm(vm, { wait: true });
      return ctx.skip(`${RUNTIME} put this VM's sandbox in no freezer cgroup at /sys/fs/cgroup/freezer/${vm} (snapshots use the runtime's pause there)`);
    }
    engine = await open();
    assert.deepEqual(engine.recovery.lost.filter((l) => l.id === vm), []);
    assert.equal((await engine.getVm(vm)).state, "running");
    assert.match((await engine.guest.exec(vm, { command: "pgrep -x sleep" })).stdout, /^\d+\n$/, "adopted, not restarted: its process lives");
    await engine.deleteVm(vm, { wait: true });
  });

  it("collects what a crash during a snapshot leaves: the layer without its record, a partial copy, a half-written record", async (ctx) => {
    if (gap) return ctx.skip(gap);
    let engine = engines.at(-1) ?? (await open());
    const vm = (await engine.createVm()).id;
    await engine.guest.writeFile(vm, "/srv/x", "x");
    const kept = await engine.snapshotVm(vm);
    const orphan = await engine.snapshotVm(vm);
    const [orphanLayer] = orphan.layers;
    assert.ok(orphanLayer);
    // The crash came after the layer was durable and before its record was: remove the record.
    await fs.rm(path.join(dataDir, "snapshots", `${orphan.id}.json`));
    await fs.mkdir(path.join(dataDir, "layers", "deadbeefdeadbeef.partial", "upper"), { recursive: true });
    await fs.writeFile(path.join(dataDir, "snapshots", `snap-zzz.json.tmp-1-abcd`), "{");
    await fs.writeFile(path.join(dataDir, "vms", vm, "vm.json.tmp-1-abcd"), "{");

    engine = await open();
    assert.deepEqual(
      (await engine.layerIds()).sort(),
      [...kept.layers].sort(),
      "only the layer a record names is left",
    );
    assert.deepEqual(await fs.readdir(path.join(dataDir, "layers")), kept.layers);
    assert.deepEqual((await fs.readdir(path.join(dataDir, "snapshots"))).sort(), [`${kept.id}.json`]);
    assert.ok(!(await fs.readdir(path.join(dataDir, "vms", vm))).some((f) => f.includes(".tmp-")));
    assert.deepEqual(
      (await engine.listSnapshots()).map((s) => s.id),
      [kept.id],
    );
    const fromKept = (await engine.createVm({ snapshotId: kept.id })).id;
    assert.equal((await engine.guest.readFile(fromKept, "/srv/x")).toString(), "x");
  });

  it("a damaged record does not stop open(): that VM's files are kept and reported, the rest recovers", async (ctx) => {
    if (gap) return ctx.skip(gap);
    const broken = path.join(dataDir, "vms", "damaged0000");
    await fs.mkdir(broken, { recursive: true });
    await fs.writeFile(path.join(broken, "vm.json"), "{not json");
    await fs.writeFile(path.join(broken, "disk.img"), "precious");
    await fs.mkdir(path.join(dataDir, "layers", "maybeinuse000000"), { recursive: true });
    try {
      const engine = await open();
      assert.deepEqual(
        engine.recovery.failed.map((f) => f.id),
        ["damaged0000"],
      );
      assert.match(engine.recovery.failed[0]?.reason ?? "", /unreadable/);
      assert.equal(await fs.readFile(path.join(broken, "disk.img"), "utf8"), "precious");
      // Collection waits until every record can be read: the unknown layer stays for now.
      assert.ok(engine.recovery.layersNotCollected);
      assert.ok((await engine.layerIds()).includes("maybeinuse000000"));
    } finally {
      await fs.rm(broken, { recursive: true, force: true });
      await fs.rm(path.join(dataDir, "layers", "maybeinuse000000"), { recursive: true, force: true });
    }
  });

  it("a runc guest process dressed up as a runtime command does not delay open()", async (ctx) => {
    if (gap) return ctx.skip(gap);
    let engine = engines.at(-1) ?? (await open());
    const vm = (await engine.createVm({ runtime: "runc" })).id;
    const root = path.join(dataDir, "runtime");
    // Under runc a guest's processes are host processes: this one's argv looks like `runsc --root=<ours>/… delete`.
    const r = await engine.guest.exec(vm, { command: `setsid -f bash -c 'exec -a "runsc --root=${root}/runsc delete" sleep 600' </dev/null >/dev/null 2>&1; sleep 0.2; pgrep -f -- "--root=${root}" >/dev/null && echo started` });
    assert.equal(r.stdout, "started\n", r.stderr);
    const t0 = performance.now();
    engine = await open();
    const openMs = performance.now() - t0;
    ctx.diagnostic(`open() with a runc guest posing as a runtime command: ${Math.round(openMs)} ms`);
    assert.ok(openMs < 10_000, `open() waited for the guest's process: ${Math.round(openMs)} ms`);
    assert.ok(engine.recovery.adopted.includes(vm));
    assert.equal((await engine.guest.exec(vm, { command: "pgrep -c sleep" })).stdout, "1\n", "the guest's process was left alone");
  });
});

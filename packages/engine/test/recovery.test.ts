import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Engine, RECOVERY_PROBE_BUDGET_MS, type EngineOptions } from "../src/index.js";
import { AGENT_BUNDLE, IMAGES_DIR, RUNTIME, countResources, destroyAll, hostGap } from "../test-support/harness.js";

/**
 * Root in a VM replaces the agent's socket with its own listener. `answer` is perl code run for
 * each connection `$c`: garbage, or nothing at all. The exec returns once the listener is bound.
 */
function hostileAgent(answer: string): string {
  const perl = [
    'use IO::Socket::UNIX; my $p = "/.capsule-run/agent.sock"; unlink $p;',
    "my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => $p, Listen => 64) or die $!;",
    'open(my $r, ">", "/srv/hostile-ready"); close $r; my @held;',
    `while (my $c = $s->accept) { $c->autoflush(1); push @held, $c; ${answer} }`,
  ].join(" ");
  return `setsid -f perl -e '${perl}' </dev/null >/dev/null 2>&1; for i in $(seq 200); do [ -e /srv/hostile-ready ] && exit 0; sleep 0.05; done; exit 1`;
}
/** A JSON frame (type 1, 4-byte big-endian length) whose payload is not JSON. */
const GARBAGE = 'print $c "\\x01\\x00\\x00\\x00\\x04{bad";';
/** Accepts and holds the connection, never answering. */
const SILENT = "";

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
    opts = { dataDir, imagesDir: IMAGES_DIR, agentBundleDir: AGENT_BUNDLE, runtime: RUNTIME };
  });
  after(async () => {
    if (!dataDir) return;
    // Only the newest engine holds the data dir; it deletes every VM, pass or fail.
    const last = engines.at(-1) ?? (await Engine.open(opts));
    await destroyAll({ engine: last, dataDir });
  });

  it("a VM whose agent socket root replaced cannot stop open(): it is lost with a reason; the others are adopted", async (ctx) => {
    if (gap) return ctx.skip(gap);
    const first = await open();
    const healthy = (await first.createVm()).id;
    const garbage = (await first.createVm()).id;
    const silent = (await first.createVm()).id;
    await first.guest.writeFile(healthy, "/srv/keep", "healthy-data");
    for (const [id, answer] of [
      [garbage, GARBAGE],
      [silent, SILENT],
    ] as const) {
      const r = await first.guest.exec(id, { command: hostileAgent(answer) });
      assert.equal(r.exitCode, 0, `hostile listener in ${id} did not start: ${r.stderr}`);
    }

    // A crash: the engine object is dropped without close(), its lock file left behind.
    const t0 = performance.now();
    const second = await open();
    const openMs = performance.now() - t0;
    ctx.diagnostic(`open() with 2 hostile VMs and 1 healthy: ${Math.round(openMs)} ms (probe budget ${RECOVERY_PROBE_BUDGET_MS} ms)`);
    // The silent VM costs one budget; tearing the two lost sandboxes down costs a few seconds more.
    assert.ok(openMs < RECOVERY_PROBE_BUDGET_MS + 15_000, `open() took ${Math.round(openMs)} ms`);

    const report = second.recovery;
    assert.deepEqual(report.adopted, [healthy]);
    assert.deepEqual(report.lost.map((l) => l.id).sort(), [garbage, silent].sort());
    assert.deepEqual(report.failed, []);

    const lostGarbage = await second.getVm(garbage);
    const lostSilent = await second.getVm(silent);
    ctx.diagnostic(`lost reasons: garbage: ${lostGarbage.lostReason}; silent: ${lostSilent.lostReason}`);
    assert.equal(lostGarbage.state, "lost");
    assert.equal(lostSilent.state, "lost");
    assert.match(lostGarbage.lostReason ?? "", /agent/i);
    assert.match(lostSilent.lostReason ?? "", /did not answer/);
    // Lost VMs are stopped: no sandbox process, no netns, no veth, no firewall element, no mount.
    const held = await countResources(dataDir, [garbage, silent]);
    assert.deepEqual({ ...held, vmDirs: 0 }, { mounts: 0, vmDirs: 0, netns: 0, veths: 0, runtimeProcs: 0, nftElements: 0, loops: 0 });
    await assert.rejects(second.guest.exec(garbage, { command: "true" }), { code: "VM_INVALID_STATE" });

    // The healthy VM was adopted as it was and still runs commands.
    assert.equal((await second.getVm(healthy)).state, "running");
    assert.equal((await second.guest.exec(healthy, { command: "cat /srv/keep" })).stdout, "healthy-data");

    // A lost VM starts again on a fresh agent, its disk intact; the reason goes with the state.
    const restarted = await second.startVm(garbage);
    assert.equal(restarted.state, "running");
    assert.equal(restarted.lostReason, undefined);
    assert.equal((await second.guest.exec(garbage, { command: "test -e /srv/hostile-ready && echo disk-kept" })).stdout, "disk-kept\n");

    // And a third open adopts what is now healthy, keeping the lost one lost.
    const third = await open();
    assert.deepEqual(third.recovery.adopted.sort(), [healthy, garbage].sort());
    assert.equal((await third.getVm(silent)).state, "lost");
    assert.deepEqual(third.recovery.lost, []);
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
});

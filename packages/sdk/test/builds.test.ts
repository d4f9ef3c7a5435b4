/**
 * Declarative snapshots through the SDK on a real server: `snapshots.ensure(spec)` builds once and
 * answers the cache after, the build handle (`get`, `phases`, `wait`) and `builds.list` describe
 * it, `vms.create({ spec })` boots from the same snapshot without building, and a failing command
 * is a VM_SETUP_FAILED naming the build, whose failed phase has the command's output. No apt:
 * one small layer keeps the file's two builds to a few seconds.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { Capsule, CapsuleError, VmSpec } from "@capsule/sdk";
import { useServer } from "../test-support/server.js";

describe("snapshots.ensure and builds", () => {
  const t = useServer();
  // A fresh discriminator: a rerun on a kept data dir would otherwise hit an earlier build.
  const spec = () =>
    new VmSpec()
      .discriminator(randomUUID())
      .additionalFiles({ "/etc/capsule-sdk-test": { content: "from the spec\n" } })
      .runCommands("echo ran > /root/ran");

  it("builds a spec once, answers the cache after, and a create with the spec boots from it", { timeout: 180_000 }, async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const capsule = new Capsule({ apiUrl: t.get().url, apiKey: t.get().keyA });
    const s = spec();
    const first = await capsule.snapshots.ensure({ spec: s, name: "sdk-built" });
    assert.equal(first.cached, false);
    const again = await capsule.snapshots.ensure({ spec: s });
    assert.deepEqual({ ...again, build: undefined }, { ...first, cached: true, build: undefined }, "the same snapshot and build, from the cache");

    const info = await first.build.wait({ intervalMs: 100 });
    assert.equal(info.state, "succeeded");
    assert.equal(info.snapshotId, first.snapshotId);
    const phases = await first.build.phases();
    assert.deepEqual(phases.map((p) => [p.name, p.state]), info.plannedPhases.map((n) => [n, "succeeded"]));
    assert.equal(await first.build.failedPhase(), null);
    const listed = await capsule.builds.list({ state: "succeeded" });
    assert.ok(listed.builds.some((b) => b.buildId === first.buildId), "builds.list has it");
    assert.equal((await capsule.snapshots.get({ snapshotId: first.snapshotId })).buildId, first.buildId);

    const before = (await capsule.builds.list()).totalCount;
    const { vm, snapshotId } = await capsule.vms.create({ spec: s, idleTimeoutSeconds: null });
    try {
      assert.equal(snapshotId, first.snapshotId);
      assert.equal((await capsule.builds.list()).totalCount, before, "no build ran for the create");
      assert.equal((await vm.exec("cat /etc/capsule-sdk-test /root/ran")).stdout, "from the spec\nran\n");
    } finally {
      await vm.delete();
    }
  });

  it("a failing command is VM_SETUP_FAILED naming the build, whose failed phase shows its output", { timeout: 180_000 }, async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const capsule = new Capsule({ apiUrl: t.get().url, apiKey: t.get().keyA });
    const err = await capsule.snapshots.ensure({ spec: new VmSpec().discriminator(randomUUID()).runCommands("echo broken-step >&2; exit 3") }).then(
      () => assert.fail("the build succeeded"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof CapsuleError);
    assert.equal(err.code, "VM_SETUP_FAILED");
    const buildId = err.body?.buildId;
    assert.equal(typeof buildId, "string");
    const build = capsule.builds.ref({ buildId: buildId as string });
    assert.equal((await build.get()).state, "failed");
    const failed = await build.failedPhase();
    assert.equal(failed?.name, "systemd");
    assert.match(failed?.log ?? "", /broken-step/);
    assert.equal((await capsule.builds.list({ state: "failed", limit: 1 })).builds[0]?.buildId, buildId, "newest first");
  });
});

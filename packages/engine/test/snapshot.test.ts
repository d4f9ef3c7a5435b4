import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { useEngine } from "../test-support/harness.js";

describe("snapshots and forks", () => {
  const t = useEngine();

  it("snapshot of a running VM keeps files and users after the VM is deleted", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const a = (await engine.createVm()).id;
    const prep = await engine.guest.exec(a, { command: "useradd -m dave && echo kept > /srv/data.txt && rm /etc/capsule-image" });
    assert.equal(prep.exitCode, 0, prep.stderr);
    const snap = await engine.snapshotVm(a, { name: "with-dave" });
    // The source keeps running through the snapshot.
    assert.equal((await engine.guest.exec(a, { command: "echo still-here" })).stdout, "still-here\n");
    await engine.deleteVm(a, { wait: true });

    const b = (await engine.createVm({ snapshotId: snap.id })).id;
    const c = (await engine.createVm({ snapshotId: snap.id })).id;
    const seen = await engine.guest.exec(b, { command: "cat /srv/data.txt; id -un dave; test -e /etc/capsule-image && echo image-file-back || echo deletion-kept" });
    assert.equal(seen.stdout, "kept\ndave\ndeletion-kept\n");

    // Siblings from one snapshot do not see each other's writes.
    await engine.guest.exec(b, { command: "echo from-b > /srv/b.txt && rm /srv/data.txt" });
    const inC = await engine.guest.exec(c, { command: "ls /srv; cat /srv/data.txt" });
    assert.equal(inC.stdout, "app\ndata.txt\nkept\n");

    // A snapshot of a VM booted from a snapshot stacks layers.
    const snap2 = await engine.snapshotVm(b);
    assert.equal(snap2.layers.length, 2);
    const d = (await engine.createVm({ snapshotId: snap2.id })).id;
    assert.equal((await engine.guest.exec(d, { command: "cat /srv/b.txt; ls /srv" })).stdout, "from-b\napp\nb.txt\n");

    // Deleting the snapshot record keeps the layers the VMs still use; they go with the last user.
    await engine.deleteSnapshot(snap.id);
    await engine.deleteSnapshot(snap2.id);
    assert.equal((await engine.guest.exec(c, { command: "cat /srv/data.txt" })).stdout, "kept\n");
    assert.equal((await engine.layerIds()).length, 2);
    for (const id of [b, c, d]) await engine.deleteVm(id, { wait: true });
    assert.deepEqual(await engine.layerIds(), []);
    await assert.rejects(engine.createVm({ snapshotId: snap.id }), { code: "SNAPSHOT_NOT_FOUND" });
  });

  it("fork makes N VMs from a VM's current disk; stop and start keep the disk", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const a = (await engine.createVm()).id;
    await engine.guest.writeFile(a, "/srv/state", "v1");
    const forks = await engine.forkVm(a, { count: 2 });
    assert.equal(forks.length, 2);
    for (const f of forks) assert.equal((await engine.guest.readFile(f.id, "/srv/state")).toString(), "v1");
    await engine.guest.writeFile(forks[0]!.id, "/srv/state", "changed");
    assert.equal((await engine.guest.readFile(a, "/srv/state")).toString(), "v1");

    await engine.guest.writeFile(a, "/srv/state", "v2");
    assert.equal((await engine.stopVm(a)).state, "stopped");
    await assert.rejects(engine.guest.exec(a, { command: "true" }), { code: "VM_INVALID_STATE" });
    const snapStopped = await engine.snapshotVm(a);
    assert.equal((await engine.startVm(a)).state, "running");
    assert.equal((await engine.guest.readFile(a, "/srv/state")).toString(), "v2");
    const e = (await engine.createVm({ snapshotId: snapStopped.id })).id;
    assert.equal((await engine.guest.readFile(e, "/srv/state")).toString(), "v2");
  });
});

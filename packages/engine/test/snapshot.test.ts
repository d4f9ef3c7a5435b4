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
  it("a snapshot has every write the guest completed, without a guest sync: a file still open for writing, a live MAP_SHARED mapping", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const a = (await engine.createVm()).id;
    // perl-base has no mmap, but syscall(2) does: map /srv/mapped shared and read(2) bytes into
    // the mapping, then keep it mapped (no msync, no munmap, no exit) past the snapshot.
    const mapper = [
      'open(my $d, "+>", "/srv/mapped") or die; truncate($d, 4096) or die;',
      "my $a = syscall(9, 0, 4096, 3, 1, fileno($d), 0); die qq(mmap $!) if $a == -1;",
      'open(my $s, "<", "/srv/src") or die; syscall(0, fileno($s), $a, 11) == 11 or die qq(read $!);',
      'open(my $r, ">", "/srv/mapper-ready"); close($r); sleep 120;',
    ].join(" ");
    const prep = await engine.guest.exec(a, {
      command: [
        "printf mapped-data > /srv/src",
        `nohup perl -e '${mapper}' >/dev/null 2>&1 &`,
        "nohup sh -c 'exec 3>/srv/open; printf still-open >&3; : > /srv/writer-ready; sleep 120' >/dev/null 2>&1 &",
        "for i in $(seq 100); do test -e /srv/mapper-ready && test -e /srv/writer-ready && break; sleep 0.05; done",
        "test -e /srv/mapper-ready && test -e /srv/writer-ready",
      ].join("\n"),
    });
    assert.equal(prep.exitCode, 0, prep.stderr);
    const snap = await engine.snapshotVm(a);
    const b = (await engine.createVm({ snapshotId: snap.id })).id;
    assert.equal((await engine.guest.exec(b, { command: "head -c 11 /srv/mapped; echo; cat /srv/open" })).stdout, "mapped-data\nstill-open");
    for (const id of [a, b]) await engine.deleteVm(id, { wait: true });
    await engine.deleteSnapshot(snap.id);
  });

  it("a layer keeps what overlayfs and the guest rely on: hard links, symlinks (never followed), opaque dirs, whiteouts, owners and modes", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const a = (await engine.createVm()).id;
    const prep = await engine.guest.exec(a, {
      command: [
        "set -e",
        "useradd -m erin",
        "echo one > /srv/h1 && ln /srv/h1 /srv/h2",
        "ln -s /etc/shadow /srv/to-shadow && ln -s ../nowhere /srv/dangling",
        "rm -rf /usr/share/doc && mkdir /usr/share/doc && echo only > /usr/share/doc/new",
        "rm /etc/issue",
        "echo s > /srv/setuid && chown erin:erin /srv/setuid && chmod 4750 /srv/setuid",
      ].join("\n"),
    });
    assert.equal(prep.exitCode, 0, prep.stderr);
    const snap = await engine.snapshotVm(a);
    await engine.deleteVm(a, { wait: true });
    const b = (await engine.createVm({ snapshotId: snap.id })).id;
    const seen = await engine.guest.exec(b, {
      command: [
        "stat -c '%h' /srv/h1 /srv/h2",
        'test "$(stat -c %i /srv/h1)" = "$(stat -c %i /srv/h2)" && echo same-inode',
        "readlink /srv/to-shadow /srv/dangling",
        "ls /usr/share/doc",
        "test -e /etc/issue && echo issue-back || echo issue-gone",
        "stat -c '%a %U %G' /srv/setuid",
      ].join("; "),
    });
    assert.equal(seen.stdout, "2\n2\nsame-inode\n/etc/shadow\n../nowhere\nnew\nissue-gone\n4750 erin erin\n", seen.stderr);
    await engine.deleteVm(b, { wait: true });
    await engine.deleteSnapshot(snap.id);
  });
});

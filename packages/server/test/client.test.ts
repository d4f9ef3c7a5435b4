/** The API driven by the official freestyle@0.1.63 client, on real sandboxes. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { asUser, client, rejectsWith } from "../test-support/client.js";
import { useServer } from "../test-support/harness.js";

describe("official client", () => {
  const t = useServer();

  it("create, exec (exit codes, multi-line, stderr), list, getInfo, delete", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const fs = client(t.get().url, t.get().keyA);
    const { vm, vmId, domains } = await fs.vms.create();
    assert.deepEqual(domains, []);
    const hi = await vm.exec("echo hi && echo oops >&2");
    assert.equal(hi.stdout, "hi\n");
    assert.equal(hi.stderr, "oops\n");
    assert.equal(hi.statusCode, 0);
    assert.equal((await vm.exec("exit 3")).statusCode, 3);
    const script = await vm.exec({ command: "A=1\nif [ $A = 1 ]; then\n  echo multi\nfi", timeoutMs: 10_000 });
    assert.equal(script.stdout, "multi\n");
    const { vms, runningCount } = await fs.vms.list();
    assert.ok(vms.some((v) => v.id === vmId && v.state === "running"));
    assert.ok(runningCount >= 1);
    const t0 = performance.now();
    await vm.delete();
    assert.ok(performance.now() - t0 < 1000, "delete answers at once");
    await rejectsWith(vm.exec("true"), "VmNotFoundError", "VM_NOT_FOUND");
    await rejectsWith(fs.vms.ref({ vmId: vmId }).delete(), "VmNotFoundError", "VM_NOT_FOUND");
  });

  it("exec and files as a Linux user; text, binary, directories; typed errors", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const fs = client(t.get().url, t.get().keyA);
    const { vm } = await fs.vms.create({ idleTimeoutSeconds: null });
    try {
      assert.equal((await vm.exec("useradd -m -s /bin/bash claude")).statusCode, 0);
      const claude = asUser(vm, "claude");
      assert.equal((await claude.exec("id -un")).stdout, "claude\n");
      await claude.fs.writeTextFile("/home/claude/notes.txt", "héllo");
      assert.equal(await vm.fs.readTextFile("/home/claude/notes.txt"), "héllo");
      assert.equal((await vm.exec("stat -c %U /home/claude/notes.txt")).stdout, "claude\n");
      await rejectsWith(claude.fs.writeTextFile("/root/nope.txt", "x"), "FilesBadRequestError", "FILES_BAD_REQUEST");
      await rejectsWith(asUser(vm, "nobody2").exec("id"), "UserNotFoundError", "USER_NOT_FOUND");

      const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      await vm.fs.writeFile("/root/bin.dat", bytes);
      assert.deepEqual(await vm.fs.readFile("/root/bin.dat"), bytes);
      await vm.fs.writeTextFile("/root/dir with space/a#b?.txt", "nested"); // parents are created
      const entries = await vm.fs.readDir("/root/dir with space");
      assert.deepEqual(entries, [{ name: "a#b?.txt", kind: "file" }]);
      assert.ok((await vm.fs.readDir("/root")).some((e) => e.name === "dir with space" && e.kind === "directory"));
      assert.equal(await vm.fs.exists("/root/bin.dat"), true);
      assert.equal(await vm.fs.exists("/root/missing"), false);
      await rejectsWith(vm.fs.readFile("/root/missing"), "FileNotFoundError", "FILE_NOT_FOUND");
      await rejectsWith(vm.exec({ command: "sleep 5", timeoutMs: 500 }), "ExecTimedOutError", "EXEC_TIMED_OUT");
    } finally {
      await vm.delete();
    }
  });

  it("snapshot, create from it after the source is gone, fork, snapshots list/get/delete", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const fs = client(t.get().url, t.get().keyA);
    const { vm: builder } = await fs.vms.create();
    await builder.fs.writeTextFile("/root/.claude.json", '{"theme":"dark"}');
    const { snapshotId, sourceVmId } = await builder.snapshot();
    assert.match(snapshotId, /^snap-/);
    await builder.delete();
    assert.ok(sourceVmId);

    const { vm, vmId } = await fs.vms.create({ snapshotId, idleTimeoutSeconds: null });
    try {
      assert.equal(await vm.fs.readTextFile("/root/.claude.json"), '{"theme":"dark"}');
      await vm.exec("echo forked-state > /root/state");
      const { forks } = await vm.fork({ count: 1 });
      assert.equal(forks.length, 1);
      const fork = forks[0]?.vm;
      assert.ok(fork);
      try {
        assert.equal((await fork.exec("cat /root/state /root/.claude.json")).stdout, 'forked-state\n{"theme":"dark"}');
        await fork.exec("echo only-in-fork > /root/state");
        assert.equal((await vm.exec("cat /root/state")).stdout, "forked-state\n", "fork and source are independent");
      } finally {
        await fork.delete();
      }
      const listed = await fs.vms.snapshots.list();
      assert.ok(listed.snapshots.some((s) => s.snapshotId === snapshotId));
      const got = await fs.vms.snapshots.get({ snapshotId });
      assert.equal(got.sourceVmId, sourceVmId);
      assert.equal(got.state, "ready");
    } finally {
      await vm.delete();
    }
    await rejectsWith(fs.vms.create({ snapshotId: "snap-doesnotexist" }), "SnapshotNotFoundError", "SNAPSHOT_NOT_FOUND");
    assert.ok(vmId);
  });

  it("works as the seed does: the lazy singleton configured from the environment", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    process.env.FREESTYLE_API_URL = `${t.get().url}/`;
    process.env.FREESTYLE_API_KEY = t.get().keyA;
    const { freestyle } = await import("freestyle");
    const { vm } = await freestyle.vms.create();
    try {
      const install = await vm.exec("export HOME=/root && echo installed > /root/marker");
      assert.equal(install.statusCode, 0);
      assert.equal((await vm.exec("cat /root/marker")).stdout?.trim(), "installed");
    } finally {
      await vm.delete();
    }
  });
});

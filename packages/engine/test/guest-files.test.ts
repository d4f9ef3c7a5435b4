/**
 * Host-backed paths a VM can write to outside its disk image (the agent's socket dir, the
 * bind-mounted /etc files, its PID 1's stdout, i.e. the runtime log) are capped by a per-VM
 * tmpfs: root in the VM cannot fill the host's filesystem through them, and ordinary use
 * (`echo >> /etc/hosts`) keeps working.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import { GUEST_FILES_TMPFS_BYTES } from "../src/disk/guest-files.js";
import { countResources, useEngine } from "../test-support/harness.js";

/** Bytes the host's filesystems hold for this VM, outside its disk image and its mounts. */
async function hostBytesOutsideDisk(vmDir: string): Promise<number> {
  let total = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const e of await fs.readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, e.name);
      if (full === path.join(vmDir, "disk.img") || full === path.join(vmDir, "disk") || full === path.join(vmDir, "rootfs")) continue;
      if (e.isDirectory()) await walk(full);
      else total += (await fs.lstat(full)).blocks * 512;
    }
  };
  await walk(vmDir);
  return total;
}

describe("guest-writable host files", () => {
  const t = useEngine({ limits: { diskMb: 128 } });

  it("cannot grow past the VM's small tmpfs, and /etc/hosts still takes appends", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine, dataDir } = t.get();
    const vm = await engine.createVm();
    const vmDir = path.join(dataDir, "vms", vm.id);

    const add = await engine.guest.exec(vm.id, { command: "echo '10.213.255.254 extra-name' >> /etc/hosts && getent hosts extra-name" });
    assert.equal(add.exitCode, 0, add.stderr);
    assert.match(add.stdout, /10\.213\.255\.254\s+extra-name/);

    // 64 MiB into each path; every write stops at the tmpfs's size with ENOSPC.
    const targets = ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/.capsule-run/fill", "/proc/1/fd/1"];
    for (const target of targets) {
      const r = await engine.guest.exec(vm.id, {
        command: `head -c 67108864 /dev/zero >> ${target}; echo "rc=$?"`,
        timeoutMs: 60_000,
      });
      assert.match(r.stdout, /rc=[1-9]/, `writing 64 MiB to ${target} must fail: ${r.stdout} ${r.stderr}`);
      const held = await hostBytesOutsideDisk(vmDir);
      assert.ok(held <= GUEST_FILES_TMPFS_BYTES + 64 * 1024, `${target}: the host holds ${held} bytes for the VM outside its disk`);
      await engine.guest.exec(vm.id, { command: "rm -f /.capsule-run/fill; : > /etc/hosts; : > /etc/resolv.conf; : > /etc/hostname" });
    }

    // The agent is still reachable through its socket on the full tmpfs; the disk quota is untouched.
    assert.equal((await engine.guest.exec(vm.id, { command: "echo alive" })).stdout, "alive\n");
    const tmpfsLine = (await fs.readFile("/proc/self/mountinfo", "utf8")).split("\n").find((l) => l.split(" ")[4] === path.join(vmDir, "guest"));
    assert.ok(tmpfsLine, "the guest-files tmpfs is mounted");
    assert.match(tmpfsLine, /\bnosuid\b/);
    assert.match(tmpfsLine, /\bnodev\b/);
    assert.match(tmpfsLine, /\bnoexec\b/);

    await engine.deleteVm(vm.id, { wait: true });
    const left = await countResources(dataDir, [vm.id]);
    assert.deepEqual(left, { mounts: 0, vmDirs: 0, netns: 0, veths: 0, runtimeProcs: 0, nftElements: 0, loops: 0, cgroups: 0 });
  });
});

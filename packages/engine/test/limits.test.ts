import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { describe, it } from "node:test";
import { RUNTIME, useEngine } from "../test-support/harness.js";

describe("resource limits", () => {
  const t = useEngine({ limits: { memoryMb: 256, pids: 128, cpus: 0.5 } });

  it("a fork bomb and a memory hog in one VM leave the host and another VM responsive", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const victim = (await engine.createVm()).id;
    const bystander = (await engine.createVm({ limits: { memoryMb: 512, pids: 512, cpus: 1 } })).id;
    if (RUNTIME === "runsc") {
      // gVisor shows the sandbox's memory limit as the VM's memory.
      const limits = await engine.guest.exec(victim, { command: "head -1 /proc/meminfo" });
      assert.match(limits.stdout, /MemTotal:\s+262144 kB/);
    }

    // The hog first: once the bomb has used up the VM's pids, nothing more can start in it.
    const hog = await engine.guest.spawn(victim, { command: "x=$(head -c 2000M /dev/zero | tr '\\0' a); echo survived", timeoutMs: 20_000 });
    hog.stdout.resume();
    hog.stderr.resume();
    const bomb = await engine.guest.spawn(victim, { command: "bomb() { bomb | bomb & }; bomb", timeoutMs: 20_000 });
    bomb.stdout.resume();
    bomb.stderr.resume();
    await new Promise((r) => setTimeout(r, 3000));

    for (let i = 0; i < 3; i++) {
      const r = await engine.guest.exec(bystander, { command: "echo responsive; cat /proc/loadavg > /dev/null" });
      assert.equal(r.stdout, "responsive\n");
      assert.equal(execFileSync("sh", ["-c", "echo host-ok"], { encoding: "utf8", timeout: 10_000 }), "host-ok\n");
    }
    // The victim is torn down cleanly afterwards, bomb and all.
    await engine.deleteVm(victim, { wait: true });
    await Promise.allSettled([bomb.exited, hog.exited]);
    assert.equal((await engine.guest.exec(bystander, { command: "echo still" })).stdout, "still\n");
  });

  it("the writable layer has a disk quota", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const vm = (await engine.createVm({ limits: { diskMb: 128 } })).id;
    const r = await engine.guest.exec(vm, { command: "dd if=/dev/zero of=/srv/fill bs=1M count=400 2>&1; echo rc=$?" });
    assert.match(r.stdout, /No space left on device/);
    assert.equal((await engine.guest.exec(vm, { command: "rm /srv/fill && echo ok" })).stdout, "ok\n");
  });

  it("rejects nonsense limits with a clear error", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    await assert.rejects(engine.createVm({ limits: { memoryMb: -1 } }), { code: "INVALID_ARGUMENT", message: /limits.memoryMb/ });
  });
});

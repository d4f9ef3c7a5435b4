import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Engine } from "../src/index.js";
import { AGENT_BUNDLE, IMAGES_DIR, countResources, sandboxGap, useEngine } from "../test-support/harness.js";

/** IPv4 addresses on the VM netns's eth0, as the host kernel sees them. */
const netnsAddrs = (vmId: string) =>
  execFileSync("ip", ["-n", `cap-${vmId}`, "-4", "-o", "addr", "show", "dev", "eth0"], { encoding: "utf8" })
    .split("\n")
    .filter((l) => l.includes(" inet "));

describe("network stack", () => {
  const t = useEngine();

  it("the VM has its lease's address on the engine's stack, and deleting it leaves nothing", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine, dataDir } = t.get();
    const vm = await engine.createVm();
    const seen = await engine.guest.exec(vm.id, { command: "hostname -I" });
    assert.equal(seen.stdout.trim(), vm.ip);
    // netstack moves the veth's address into the sandbox; hostinet leaves it with the kernel.
    if (engine.features.network === "netstack") assert.deepEqual(netnsAddrs(vm.id), []);
    else assert.equal(netnsAddrs(vm.id).length, 1);
    assert.equal(engine.features.checkpoint, engine.features.network === "netstack");
    // A restart makes a new netns and lease, whose address the new sandbox takes the same way.
    await engine.stopVm(vm.id);
    const again = await engine.startVm(vm.id);
    assert.equal((await engine.guest.exec(vm.id, { command: "hostname -I" })).stdout.trim(), again.ip);
    assert.equal(netnsAddrs(vm.id).length, engine.features.network === "netstack" ? 0 : 1);
    await engine.deleteVm(vm.id, { wait: true });
    assert.deepEqual(Object.values(await countResources(dataDir, [vm.id])).filter((n) => n !== 0), []);
  });
});

describe("network stack at start-up", () => {
  let gap: string | undefined;
  let dir = "";
  /** A runsc that answers --version but, like runsc 2024-07 on kernel 6.x, refuses netstack. */
  let fakeRunsc = "";
  before(async () => {
    gap = await sandboxGap();
    if (gap) return;
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-netstack-startup-"));
    fakeRunsc = path.join(dir, "runsc");
    await fs.writeFile(
      fakeRunsc,
      [
        "#!/bin/sh",
        'case " $* " in',
        '  *" --version "*) echo "runsc version 0.0~20240729.0" ;;',
        '  *" run "*) echo "running container: starting container: setting up network: cannot run with network enabled in root network namespace" >&2; exit 128 ;;',
        '  *" list "*) echo "[]" ;;',
        "esac",
        "",
      ].join("\n"),
      { mode: 0o755 },
    );
  });
  after(async () => {
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });
  const open = (network: "netstack" | "auto", dataDir: string) => Engine.open({ dataDir, imagesDir: IMAGES_DIR, agentBundleDir: AGENT_BUNDLE, runscPath: fakeRunsc, network });

  it("netstack with a runsc that cannot start it: the engine does not open, and says why and what to do", async (ctx) => {
    if (gap) return ctx.skip(gap);
    await assert.rejects(open("netstack", path.join(dir, "data-netstack")), (err: Error & { code?: string }) => {
      assert.equal(err.code, "HOST_NOT_READY");
      assert.match(err.message, /cannot start gVisor's netstack/);
      assert.match(err.message, /root network namespace/);
      assert.match(err.message, /scripts\/setup\.sh/);
      return true;
    });
  });

  it("auto with such a runsc: hostinet, and no checkpoints", async (ctx) => {
    if (gap) return ctx.skip(gap);
    const engine = await open("auto", path.join(dir, "data-auto"));
    try {
      assert.deepEqual(engine.features, { network: "hostinet", checkpoint: false });
    } finally {
      await engine.close();
    }
  });
});

import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { Engine } from "@capsule/engine";
import { AGENT_BUNDLE, hostGap } from "@capsule/engine/test-support";
import { capsule } from "../test-support/cli.js";

describe("capsule image", () => {
  it("builds a bookworm image with mmdebstrap, lists it, skips a rebuild, and boots a VM from it", async (ctx) => {
    const gap = await hostGap();
    if (gap) {
      if (process.env.CI) throw new Error(gap);
      return ctx.skip(gap);
    }
    const imagesDir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-images-"));
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-image-vm-"));
    let engine: Engine | undefined;
    try {
      const built = await capsule(["image", "build", "deb12", "--suite", "bookworm", "--images-dir", imagesDir, "--json"]);
      assert.equal(built.code, 0, built.stderr);
      assert.deepEqual(JSON.parse(built.stdout), { name: "deb12", path: path.join(imagesDir, "deb12", "rootfs"), built: true });
      assert.match(built.stderr, /downloading packages|installing/); // progress went to stderr

      const list = await capsule(["image", "list", "--images-dir", imagesDir, "--json"]);
      const images = JSON.parse(list.stdout) as Array<{ name: string; os: string }>;
      assert.deepEqual(images.map((i) => [i.name, i.os]), [["deb12", "Debian GNU/Linux 12 (bookworm)"]]);
      assert.deepEqual(await fs.readdir(imagesDir), ["deb12"], "no build leftovers");

      const again = await capsule(["image", "build", "deb12", "--suite", "bookworm", "--images-dir", imagesDir, "--json"]);
      assert.equal(JSON.parse(again.stdout).built, false);

      engine = await Engine.open({ dataDir, imagesDir, agentBundleDir: AGENT_BUNDLE });
      const vm = await engine.createVm({ image: "deb12" });
      const r = await engine.guest.exec(vm.id, { command: "cut -d. -f1 /etc/debian_version; test -d /srv/app && useradd -m u1 && id -un u1" });
      assert.equal(r.stdout, "12\nu1\n", r.stderr);
      await engine.deleteVm(vm.id, { wait: true });
    } finally {
      await engine?.close();
      await fs.rm(dataDir, { recursive: true, force: true });
      await fs.rm(imagesDir, { recursive: true, force: true });
    }
  });

  it("rejects an unknown suite as a usage error", async () => {
    const r = await capsule(["image", "build", "--suite", "sid"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /INVALID_ARGUMENT/);
  });
});

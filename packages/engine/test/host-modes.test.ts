/**
 * A guest's setuid file is useless on the host: the data dir tree is root-only (corrected when
 * the engine opens), and the VM disks' loop mounts are nosuid,nodev. A local user of the host
 * who tries a setuid-root program a VM made, in its live disk or in a snapshot layer, gets no root.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Engine } from "../src/index.js";
import { AGENT_BUNDLE, IMAGES_DIR, RUNTIME, RUNSC_OPTIONS, destroyAll, sandboxGap, type TestEngine } from "../test-support/harness.js";

const NOBODY = 65534;

/** Runs `file -u` as nobody: what it prints (its effective uid), or why it could not run. */
function runAsNobody(file: string): { ran: boolean; euid?: string; why?: string } {
  const r = spawnSync("setpriv", [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", "--", file, "-u"], { encoding: "utf8", timeout: 10_000 });
  if (r.status === 0) return { ran: true, euid: r.stdout.trim() };
  return { ran: false, why: `${r.status} ${r.stderr.trim()}` };
}

describe("host file hygiene", () => {
  let t: TestEngine | undefined;
  let gap: string | undefined;
  before(async () => {
    gap = await sandboxGap();
    if (gap) return;
    // A data dir as an older version (or a careless operator) left it: world-readable.
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-test-modes-"));
    await fs.chmod(dataDir, 0o755);
    await fs.mkdir(path.join(dataDir, "layers"), { mode: 0o755 });
    await fs.chmod(path.join(dataDir, "layers"), 0o755);
    const engine = await Engine.open({ dataDir, imagesDir: IMAGES_DIR, agentBundleDir: AGENT_BUNDLE, runtime: RUNTIME, ...RUNSC_OPTIONS });
    t = { engine, dataDir };
  });
  after(async () => {
    if (t) await destroyAll(t);
  });

  it("a setuid-root file a VM made gives a local user no root, from its disk or its snapshot", async (ctx) => {
    if (gap) return ctx.skip(gap);
    const { engine, dataDir } = t!;
    const mode = async (p: string) => ((await fs.stat(p)).mode & 0o777).toString(8);
    assert.equal(await mode(dataDir), "700", "the data dir is tightened on open");
    assert.equal(await mode(path.join(dataDir, "layers")), "700");

    const vm = await engine.createVm();
    const made = await engine.guest.exec(vm.id, { command: "cp /usr/bin/id /suid-id && chown 0:0 /suid-id && chmod 4755 /suid-id && stat -c %a /suid-id" });
    assert.equal(made.stdout, "4755\n", made.stderr);
    const snap = await engine.snapshotVm(vm.id);

    const inDisk = path.join(dataDir, "vms", vm.id, "disk", "upper", "suid-id");
    const inLayer = path.join(dataDir, "layers", snap.layers[0] as string, "suid-id");
    for (const file of [inDisk, inLayer]) {
      assert.equal(((await fs.stat(file)).mode & 0o7777).toString(8), "4755", `${file} kept its bits (it is the VM's file)`);
      const r = runAsNobody(file);
      assert.ok(!r.ran || r.euid !== "0", `${file} ran as root for nobody`);
    }
    for (const p of [path.join(dataDir, "vms"), path.join(dataDir, "vms", vm.id), path.join(dataDir, "snapshots")]) {
      assert.equal(await mode(p), "700", p);
    }
    for (const rec of [path.join(dataDir, "vms", vm.id, "vm.json"), path.join(dataDir, "snapshots", `${snap.id}.json`)]) {
      assert.equal(await mode(rec), "600", rec);
    }

    // Even for root's own tools reaching into it, the live disk mount carries nosuid and nodev.
    const line = (await fs.readFile("/proc/self/mountinfo", "utf8")).split("\n").find((l) => l.split(" ")[4] === path.join(dataDir, "vms", vm.id, "disk"));
    assert.ok(line, "the disk is mounted");
    assert.match(line.split(" ")[5] ?? "", /\bnosuid\b/);
    assert.match(line.split(" ")[5] ?? "", /\bnodev\b/);
  });
});

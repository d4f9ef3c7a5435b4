/**
 * The order of a memory checkpoint (memory/checkpoint.ts) against a fake runsc that logs its
 * calls: the agent is prepared before the pause, the layer is copied between the pause and the
 * save, and the marker comes last; a refused save still resumes the VM and wakes its agent.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { CKPT_RESUME_MARKER } from "@capsule/agent-protocol";
import { copyLayer } from "../src/disk/layers.js";
import { checkpointVm, restoreVm } from "../src/memory/checkpoint.js";
import { RunscRuntime } from "../src/runtime/runsc.js";

describe("memory checkpoint order", () => {
  let dir: string;
  let rt: RunscRuntime;
  let root: string;
  const calls = (): string[] => fs.readFileSync(path.join(dir, "calls"), "utf8").trim().split("\n");

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "capsule-memory-"));
    const fake = path.join(dir, "runsc");
    // Logs its arguments (and whether the marker exists yet); refuses a checkpoint while dir/refuse exists.
    fs.writeFileSync(
      fake,
      `#!/bin/sh\nm=no; [ -e "${dir}/run/${CKPT_RESUME_MARKER}" ] && m=yes\necho "$* marker=$m upper-copied=$(ls ${dir}/copy.partial 2>/dev/null | tr '\\n' ,)" >> "${dir}/calls"\ncase "$*" in *checkpoint*) [ -e "${dir}/refuse" ] && exit 1; [ -e "${dir}/big" ] && head -c 4096 /dev/zero > "${dir}/image/pages";; esac\nexit 0\n`,
      { mode: 0o755 },
    );
    fs.mkdirSync(path.join(dir, "run"));
    fs.mkdirSync(path.join(dir, "upper"));
    fs.writeFileSync(path.join(dir, "upper", "file"), "x");
    root = path.join(dir, "state");
    rt = new RunscRuntime(fake, root, "systrap", "netstack");
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const source = (log: string[]) => ({
    id: "vm-1",
    runDir: path.join(dir, "run"),
    upperDir: path.join(dir, "upper"),
    prepare: async () => {
      log.push("prepare");
    },
  });
  const reset = () => {
    for (const p of ["calls", "copy", "copy.partial", "image", `run/${CKPT_RESUME_MARKER}`]) fs.rmSync(path.join(dir, p), { recursive: true, force: true });
    fs.writeFileSync(path.join(dir, "calls"), "");
  };
  const out = (maxImageBytes = 1 << 20) => ({ imageDir: path.join(dir, "image"), copyUpper: (upper: string) => copyLayer(upper, path.join(dir, "copy")), maxImageBytes });

  it("prepare, pause, copy, save, resume, then the marker", async () => {
    reset();
    const log: string[] = [];
    const t = await checkpointVm(rt, source(log), out());
    assert.deepEqual(log, ["prepare"]);
    const state = `--root=${root}`;
    assert.deepEqual(calls(), [
      `${state} pause vm-1 marker=no upper-copied=`,
      `${state} checkpoint --leave-running --compression=none --image-path=${dir}/image vm-1 marker=no upper-copied=file,`,
      `${state} resume vm-1 marker=no upper-copied=file,`,
    ]);
    assert.ok(fs.existsSync(path.join(dir, "run", CKPT_RESUME_MARKER)), "the marker is written last");
    assert.equal(fs.readFileSync(path.join(dir, "copy.partial", "file"), "utf8"), "x");
    assert.ok(t.totalMs >= t.checkpointMs);
  });

  it("a refused save: rejected, and the VM is resumed and its agent woken all the same", async () => {
    reset();
    fs.writeFileSync(path.join(dir, "refuse"), "");
    try {
      await assert.rejects(checkpointVm(rt, source([]), out()));
    } finally {
      fs.rmSync(path.join(dir, "refuse"));
    }
    assert.deepEqual(calls().map((c) => c.split(" ")[1]), ["pause", "checkpoint", "resume"]);
    assert.ok(fs.existsSync(path.join(dir, "run", CKPT_RESUME_MARKER)));
    // The layer is copied before the save; removing it is the caller's (the engine discards its reserved layer).
    assert.equal(fs.existsSync(path.join(dir, "copy.partial")), true, "the copy came before the save");
  });

  it("an image bigger than the bound is refused, and the VM resumed and woken", async () => {
    reset();
    fs.writeFileSync(path.join(dir, "big"), "");
    try {
      await assert.rejects(checkpointVm(rt, source([]), out(1024)), (err: Error & { code?: string }) => err.code === "UNSUPPORTED" && /memory image/.test(err.message));
    } finally {
      fs.rmSync(path.join(dir, "big"));
    }
    assert.deepEqual(calls().map((c) => c.split(" ")[1]), ["pause", "checkpoint", "resume"]);
    assert.ok(fs.existsSync(path.join(dir, "run", CKPT_RESUME_MARKER)));
    assert.equal(fs.existsSync(path.join(dir, "copy.partial")), true, "the copy came before the save (the caller removes it)");
  });

  it("a marker left from an earlier cycle is removed before the agent is prepared", async () => {
    reset();
    fs.writeFileSync(path.join(dir, "run", CKPT_RESUME_MARKER), "");
    let seen = true;
    await checkpointVm(rt, { ...source([]), prepare: async () => void (seen = fs.existsSync(path.join(dir, "run", CKPT_RESUME_MARKER))) }, out());
    assert.equal(seen, false);
  });

  it("a symlink the guest planted at the marker's name is replaced, its target left alone", async () => {
    reset();
    const target = path.join(dir, "host-file");
    fs.writeFileSync(target, "precious");
    fs.symlinkSync(target, path.join(dir, "run", CKPT_RESUME_MARKER));
    await checkpointVm(rt, source([]), out());
    assert.equal(fs.readFileSync(target, "utf8"), "precious");
    assert.ok(fs.lstatSync(path.join(dir, "run", CKPT_RESUME_MARKER)).isFile());
  });

  it("restore: the marker is in the new VM's run dir before runsc starts it", async () => {
    reset();
    await restoreVm(rt, path.join(dir, "image"), { id: "vm-2", bundleDir: path.join(dir, "bundle"), runDir: path.join(dir, "run"), netnsPath: "/run/netns/x", logFile: path.join(dir, "log") });
    // The flags the sandbox's run had: a restore must match them.
    assert.deepEqual(calls(), [
      `--root=${root} --platform=systrap --network=sandbox --net-disconnect-ok --overlay2=none --host-uds=create restore --detach --image-path=${dir}/image --bundle=${dir}/bundle vm-2 marker=yes upper-copied=`,
    ]);
  });

  it("runc and a hostinet runsc refuse checkpoint and restore as UNSUPPORTED", async () => {
    const hostinet = new RunscRuntime(path.join(dir, "runsc"), root, "systrap", "hostinet");
    assert.equal(hostinet.canCheckpoint, false);
    await assert.rejects(hostinet.checkpoint("vm-1", path.join(dir, "image")), { code: "UNSUPPORTED" });
    const { RuncRuntime } = await import("../src/runtime/runc.js");
    const runc = new RuncRuntime("runc", root);
    await assert.rejects(runc.restore(), { code: "UNSUPPORTED" });
  });
});

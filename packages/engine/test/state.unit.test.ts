/**
 * The engine's on-disk state without a sandbox: records, the layer store's collection rules and
 * the data-dir lock, on a scratch directory. Needs neither root nor a VM.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { LayerStore } from "../src/disk/layer-store.js";
import { Paths } from "../src/paths.js";
import { DataDirLock } from "../src/state/data-dir-lock.js";
import { Records, type SnapshotRecord, type VmRecord } from "../src/state/records.js";

function vmRecord(id: string, layers: string[]): VmRecord {
  const now = new Date().toISOString();
  return {
    id,
    state: "stopped",
    runtime: "runsc",
    image: "trixie",
    layers,
    limits: { memoryMb: 256, cpus: 1, pids: 128, diskMb: 256 },
    egress: "none",
    createdAt: now,
    updatedAt: now,
  };
}

function snapshotRecord(id: string, layers: string[]): SnapshotRecord {
  return { id, image: "trixie", layers, sourceVmId: "vm1", sizeBytes: 0, createdAt: new Date().toISOString() };
}

describe("engine state on disk", () => {
  let dir = "";
  let paths: Paths;
  let records: Records;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-state-unit-"));
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });
  const fresh = async (name: string) => {
    paths = new Paths(path.join(dir, name));
    records = new Records(paths);
    await fs.mkdir(paths.layersDir, { recursive: true });
  };

  it("a record write replaces the old one whole and leaves no temp file", async () => {
    await fresh("write");
    const rec = vmRecord("vm1", []);
    await records.saveVm(rec);
    rec.state = "running";
    await records.saveVm(rec);
    assert.equal((await records.readVm("vm1"))?.state, "running");
    assert.deepEqual(await fs.readdir(paths.vm("vm1").dir), ["vm.json"]);
    // Ids that are not ids never reach the file system.
    assert.equal(await records.readVm("../vm1"), undefined);
    assert.equal(await records.readSnapshot("snap-../../x"), undefined);
    await assert.rejects(records.snapshot("snap-nope"), { code: "SNAPSHOT_NOT_FOUND" });
  });

  it("VM records are served from memory as private copies, matching the file, until forgotten", async () => {
    await fresh("cache");
    const rec = vmRecord("vm1", ["l1"]);
    await records.saveVm(rec);
    const read = await records.readVm("vm1");
    assert.deepEqual(read, rec);
    read!.state = "deleting";
    read!.layers.push("l2");
    assert.deepEqual(await records.readVm("vm1"), rec, "a caller's changes must not reach the cache");
    rec.state = "running";
    await records.saveVm(rec);
    assert.equal((await records.readVm("vm1"))?.state, "running");
    assert.deepEqual(await new Records(paths).readVm("vm1"), await records.readVm("vm1"));
    // A write that fails leaves nothing cached: the next read is the file's.
    await fs.rm(paths.vm("vm1").dir, { recursive: true });
    await fs.writeFile(paths.vm("vm1").dir, "a file where the VM's directory was");
    await assert.rejects(records.saveVm({ ...rec, state: "stopped" }));
    await assert.rejects(records.readVm("vm1"), { code: "ENOTDIR" });
    await fs.rm(paths.vm("vm1").dir);
    records.forgetVm("vm1");
    assert.equal(await records.readVm("vm1"), undefined);
  });

  it("a read racing a write (with another VM's write beside it) never leaves the old record cached", async () => {
    await fresh("cache-race");
    const a = vmRecord("vma", []);
    const b = vmRecord("vmb", []);
    await records.saveVm(a);
    await records.saveVm(b);
    for (let i = 0; i < 50; i++) {
      const racing = new Records(paths); // an empty cache, so the racing read goes to the file
      await racing.readVm("vmb");
      a.state = i % 2 ? "running" : "stopping";
      // Both writes start before the read, which (a plain file read) ends before either write does.
      await Promise.all([racing.saveVm({ ...a }), racing.saveVm({ ...b }), racing.readVm("vma")]);
      assert.equal((await racing.readVm("vma"))?.state, a.state, `round ${i}`);
    }
  });

  it("another VM's record write ending during a read leaves that read cached (a burst of claims keeps the listing in memory)", async () => {
    await fresh("cache-beside");
    await records.saveVm(vmRecord("vmb", []));
    // vma's record is a FIFO for now, so its read ends only when the test writes it: after vmb's write.
    const vma = paths.vm("vma");
    await fs.mkdir(vma.dir, { recursive: true });
    execFileSync("mkfifo", [vma.record]);
    const cold = new Records(paths); // an empty cache, so the read goes to the file
    const read = cold.readVm("vma");
    await cold.saveVm(vmRecord("vmb", ["l1"]));
    await fs.writeFile(vma.record, JSON.stringify(vmRecord("vma", [])));
    assert.deepEqual((await read)?.layers, []);
    await fs.rm(vma.record);
    await fs.writeFile(vma.record, JSON.stringify(vmRecord("vma", ["written-behind-the-cache"])));
    assert.deepEqual((await cold.readVm("vma"))?.layers, [], "the read was cached");
  });

  it("temp files a crash left are removed; finished records are kept", async () => {
    await fresh("temps");
    await records.saveVm(vmRecord("vm1", []));
    await records.saveSnapshot(snapshotRecord("snap-a", []));
    await fs.writeFile(`${paths.vm("vm1").record}.tmp-1-ffff`, "{");
    await fs.writeFile(`${paths.snapshotRecord("snap-b")}.tmp-1-ffff`, "{");
    await records.removeTempFiles();
    assert.deepEqual(await fs.readdir(paths.vm("vm1").dir), ["vm.json"]);
    assert.deepEqual(await fs.readdir(paths.snapshotsDir), ["snap-a.json"]);
  });

  it("gc keeps layers a VM or a snapshot names or a capture reserved; removes the rest and every partial copy", async () => {
    await fresh("gc");
    const layers = new LayerStore(paths, records);
    for (const l of ["byvm", "bysnap", "orphan", "unnamed", "half"]) await fs.mkdir(paths.layer(l));
    await fs.mkdir(paths.layer("half.partial"));
    const reserved = layers.reserve();
    await fs.mkdir(paths.layer(reserved) + ".partial");
    await records.saveVm(vmRecord("vm1", ["byvm"]));
    await records.saveSnapshot(snapshotRecord("snap-a", ["bysnap", "byvm"]));
    await layers.gc();
    assert.deepEqual((await fs.readdir(paths.layersDir)).sort(), ["bysnap", "byvm", `${reserved}.partial`].sort());
    assert.deepEqual((await layers.ids()).sort(), ["bysnap", "byvm"]);
    layers.release(reserved);
    await layers.gc();
    assert.deepEqual((await fs.readdir(paths.layersDir)).sort(), ["bysnap", "byvm"]);
  });

  it("gc removes nothing while a record is unreadable", async () => {
    await fresh("corrupt");
    const layers = new LayerStore(paths, records);
    await fs.mkdir(paths.layer("maybeused"));
    await fs.mkdir(paths.vm("vm1").dir, { recursive: true });
    await fs.writeFile(paths.vm("vm1").record, "{not json");
    await assert.rejects(layers.gc());
    assert.deepEqual(await fs.readdir(paths.layersDir), ["maybeused"]);
  });

  it("the data-dir lock refuses a live owner and takes over from a dead one", async () => {
    await fresh("lock");
    const file = paths.lockFile;
    // A live process (this one's parent) holds it.
    await fs.writeFile(file, String(process.ppid));
    await assert.rejects(DataDirLock.acquire(file), (err: Error & { code?: string }) => err.code === "ENGINE_LOCKED" && err.message.includes(String(process.ppid)));
    // Its owner died: the lock is stale.
    const child = spawn(process.execPath, ["-e", ""]);
    const deadPid = child.pid ?? 0;
    await new Promise((r) => child.once("exit", r));
    await fs.writeFile(file, String(deadPid));
    const lock = await DataDirLock.acquire(file);
    assert.equal(await fs.readFile(file, "utf8"), String(process.pid));
    await lock.release();
    await assert.rejects(fs.access(file));
  });
});

/**
 * A snapshot's layer is on stable storage before the record that names it: a power cut after the
 * record is written can never leave a record pointing at a layer whose files were still in the
 * page cache. Checked on the syscalls a real layer write and record write make, traced by strace.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";

function hasStrace(): boolean {
  try {
    execFileSync("strace", ["-V"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe("durability of layers and records", () => {
  let dir = "";
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-durable-"));
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it("the layer's files and directories are synced, and its rename fsynced, before the snapshot record is renamed into place", async (ctx) => {
    if (!hasStrace()) return ctx.skip("strace is not installed (apt-get install strace)");
    const upper = path.join(dir, "upper");
    await fs.mkdir(path.join(upper, "srv", "deep"), { recursive: true });
    await fs.writeFile(path.join(upper, "srv", "deep", "file"), "data");
    const dataDir = path.join(dir, "data");
    const src = (m: string) => JSON.stringify(new URL(`../src/${m}`, import.meta.url).href);
    const script = `
      import { LayerStore } from ${src("disk/layer-store.js")};
      import { Paths } from ${src("paths.js")};
      import { Records } from ${src("state/records.js")};
      const paths = new Paths(${JSON.stringify(dataDir)});
      const records = new Records(paths);
      const layers = new LayerStore(paths, records);
      const id = layers.reserve();
      await layers.write(id, ${JSON.stringify(upper)});
      await records.saveSnapshot({ id: "snap-durable", image: "trixie", layers: [id], sourceVmId: "vm1", sizeBytes: 0, createdAt: "now" });
      console.log(id);`;
    const log = path.join(dir, "strace.log");
    const child = spawn(
      "strace",
      ["-f", "-y", "-qq", "-s", "512", "-e", "trace=syncfs,fsync,fdatasync,rename,renameat,renameat2", "-o", log, process.execPath, "--input-type=module", "-e", script],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const code = await new Promise((r) => child.once("exit", r));
    assert.equal(code, 0);
    const layer = out.trim();
    const lines = (await fs.readFile(log, "utf8")).split("\n");
    const at = (what: string, re: RegExp) => {
      const i = lines.findIndex((l) => re.test(l));
      assert.ok(i >= 0, `no ${what} in the trace:\n${lines.join("\n")}`);
      return i;
    };
    const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const layerDir = esc(path.join(dataDir, "layers", layer));
    const steps = [
      at("syncfs of the partial layer", new RegExp(`syncfs\\(\\d+<${layerDir}\\.partial>`)),
      at("rename of the partial layer", new RegExp(`rename\\w*\\(.*"${layerDir}\\.partial", .*"${layerDir}"`)),
      at("fsync of the layers dir", new RegExp(`fsync\\(\\d+<${esc(path.join(dataDir, "layers"))}>`)),
      at("fsync of the record's temp file", new RegExp(`fsync\\(\\d+<${esc(path.join(dataDir, "snapshots", "snap-durable.json"))}\\.tmp-`)),
      at("rename of the record", new RegExp(`rename\\w*\\(.*"${esc(path.join(dataDir, "snapshots", "snap-durable.json"))}"`)),
      at("fsync of the snapshots dir", new RegExp(`fsync\\(\\d+<${esc(path.join(dataDir, "snapshots"))}>`)),
    ];
    assert.deepEqual(steps, [...steps].sort((a, b) => a - b), `out of order: ${steps.join(", ")}`);
  });
});

// Boots one sandbox from the installed image and agent, runs a command in it, and removes it.
// Uses a scratch data dir beside the real one, so it never disturbs a running server.
import fs from "node:fs/promises";
import path from "node:path";
import { Engine } from "../packages/engine/dist/src/index.js";

const dataDir = process.env.CAPSULE_DATA_DIR ?? "/var/lib/capsule";
const scratch = await fs.mkdtemp(path.join(dataDir, "smoke-"));
const t0 = performance.now();
const engine = await Engine.open({ dataDir: scratch, imagesDir: path.join(dataDir, "images"), agentBundleDir: path.join(dataDir, "agent") });
try {
  const vm = await engine.createVm();
  const t1 = performance.now();
  const r = await engine.guest.exec(vm.id, { command: "cat /etc/capsule-image; id -un" });
  if (r.exitCode !== 0) throw new Error(`exec failed: ${r.stderr}`);
  console.log(`sandbox ${vm.id} (${vm.runtime}) booted in ${Math.round(t1 - t0)} ms; says: ${r.stdout.trim().replace(/\n/g, ", ")}`);
  await engine.deleteVm(vm.id, { wait: true });
} finally {
  await engine.close();
  await fs.rm(scratch, { recursive: true, force: true });
}

import fs from "node:fs/promises";
import path from "node:path";
import { parseServiceSpec, type ServiceSpec } from "@capsule/agent-protocol";
import { log } from "../log.js";

/**
 * Service definitions on the VM's own disk: `<dir>/<name>.json`, root-only, each written
 * atomically (temp file, fsync, rename, fsync of the directory), so a crash leaves the old
 * definition or the new one. The disk is the VM's writable layer: definitions survive a stop and
 * start and are carried by snapshots.
 */
const SUFFIX = ".json";
/** A definition is a few KiB; a bigger file is not one of ours. */
const MAX_DEFINITION_BYTES = 1024 * 1024;

/** Every valid definition in `dir`; one that fails to parse (guest root may edit them) is logged and left out. */
export async function loadDefinitions(dir: string): Promise<ServiceSpec[]> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const specs: ServiceSpec[] = [];
  for (const file of names.filter((n) => n.endsWith(SUFFIX) && !n.startsWith("."))) {
    try {
      const fh = await fs.open(path.join(dir, file), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
      let text: string;
      try {
        if ((await fh.stat()).size > MAX_DEFINITION_BYTES) throw new Error(`over ${MAX_DEFINITION_BYTES} bytes`);
        text = await fh.readFile("utf8");
      } finally {
        await fh.close();
      }
      const spec = parseServiceSpec(JSON.parse(text));
      if (`${spec.name}${SUFFIX}` !== file) throw new Error(`it defines ${JSON.stringify(spec.name)}`);
      specs.push(spec);
    } catch (err) {
      log(`service definition ${file} skipped: ${(err as Error).message}`);
    }
  }
  return specs;
}

export async function saveDefinition(dir: string, spec: ServiceSpec): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, `${spec.name}${SUFFIX}`);
  const tmp = path.join(dir, `.${spec.name}${SUFFIX}.${process.pid}.tmp`);
  const fh = await fs.open(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_NOFOLLOW, 0o600);
  try {
    await fh.writeFile(JSON.stringify(spec));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.rename(tmp, file);
  await syncDir(dir);
}

export async function removeDefinition(dir: string, name: string): Promise<void> {
  await fs.rm(path.join(dir, `${name}${SUFFIX}`), { force: true });
  await syncDir(dir);
}

async function syncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * The raw runtime the benchmarks compare Capsule with: `runsc run --detach` of a plain OCI bundle
 * on the same base image (read-only root; gVisor adds its own tmpfs /tmp), `runsc exec` into it,
 * and its `pause`/`resume`, `checkpoint` and `restore`. No network, no disk image, no agent: what
 * gVisor alone costs on this host.
 * @module
 */
import { execFile, spawn } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** The sandbox's flags for `run` and `restore` (a restore must get the flags the image was saved with). */
const SANDBOX_FLAGS = ["--network=none", "--platform=systrap"];

/** What the sandbox runs, when not `sleep infinity`, and the bind mounts (read-only) it needs. */
export interface RawWorkload {
  args: string[];
  binds?: Array<{ destination: string; source: string }>;
}

export class RawRunsc {
  /** runsc's state dir for these sandboxes (`--root`), under `dir`. */
  readonly root: string;

  /** `dir`: scratch space for the bundles and runsc's state; `rootfs`: the image's root to run. */
  constructor(
    private readonly dir: string,
    private readonly rootfs: string,
    private readonly workload: RawWorkload = { args: ["sleep", "infinity"] },
  ) {
    this.root = path.join(dir, "root");
  }

  async bundle(id: string): Promise<string> {
    const b = path.join(this.dir, id);
    await fs.mkdir(b, { recursive: true });
    await run("runsc", ["spec", "--bundle", b, "--", ...this.workload.args]);
    const spec = JSON.parse(await fs.readFile(path.join(b, "config.json"), "utf8"));
    spec.root = { path: this.rootfs, readonly: true };
    spec.process.terminal = false;
    for (const { destination, source } of this.workload.binds ?? []) spec.mounts.push({ destination, type: "bind", source, options: ["rbind", "ro"] });
    await fs.writeFile(path.join(b, "config.json"), JSON.stringify(spec));
    return b;
  }

  async start(id: string): Promise<void> {
    await this.detached(["run", "--detach", `--bundle=${await this.bundle(id)}`, id]);
  }

  /** `runsc create`: the sandbox's processes started, its container not; a later {@link restore} with `created` fills it. */
  async create(id: string): Promise<void> {
    await this.detached(["create", `--bundle=${await this.bundle(id)}`, id]);
  }

  /**
   * `runsc restore --detach` of `imageDir` into sandbox `id`: a new one on a bundle of its own, or
   * (`created`) the one {@link create} made. `direct`: read the pages file with O_DIRECT.
   */
  async restore(id: string, imageDir: string, opts: { created?: boolean; direct?: boolean } = {}): Promise<void> {
    const bundle = opts.created ? path.join(this.dir, id) : await this.bundle(id);
    await this.detached(["restore", "--detach", ...(opts.direct ? ["--direct"] : []), `--image-path=${imageDir}`, `--bundle=${bundle}`, id]);
  }

  /**
   * `runsc checkpoint --leave-running --compression=none` into `imageDir` (made here, must not
   * exist); `excludeZeroPages`: leave committed zero-filled pages out of the image.
   */
  async checkpoint(id: string, imageDir: string, opts: { excludeZeroPages?: boolean } = {}): Promise<void> {
    await fs.mkdir(imageDir);
    await run("runsc", [`--root=${this.root}`, "checkpoint", "--leave-running", "--compression=none", ...(opts.excludeZeroPages ? ["--exclude-committed-zero-pages"] : []), `--image-path=${imageDir}`, id]);
  }

  async pause(id: string): Promise<void> {
    await run("runsc", [`--root=${this.root}`, "pause", id]);
  }

  async resume(id: string): Promise<void> {
    await run("runsc", [`--root=${this.root}`, "resume", id]);
  }

  /** A sandbox-starting command (run, restore): it leaves its stdio open in the sandbox, so wait for its exit, never for output. */
  private detached(args: string[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const c = spawn("runsc", [`--root=${this.root}`, ...SANDBOX_FLAGS, ...args], { stdio: "ignore" });
      c.on("error", reject);
      c.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`runsc ${args[0]} exited ${code}`))));
    });
  }

  /** Runs `cmd` in the sandbox; rejects when it exits non-zero (the error carries `code`, `stdout`, `stderr`). */
  exec(id: string, ...cmd: string[]): Promise<{ stdout: string; stderr: string }> {
    return run("runsc", [`--root=${this.root}`, "exec", id, ...cmd]);
  }

  async destroy(id: string): Promise<void> {
    await run("runsc", [`--root=${this.root}`, "delete", "--force", id]).catch(() => undefined);
  }

  /** Every sandbox runsc knows under this root, whoever started it (for clean-up after a failure). */
  async list(): Promise<string[]> {
    try {
      const { stdout } = await run("runsc", [`--root=${this.root}`, "list", "-quiet"]);
      return stdout.split("\n").filter(Boolean);
    } catch {
      return []; // no root yet: nothing was started
    }
  }
}

/** The bytes of a checkpoint image (the files runsc wrote into its directory). */
export async function imageBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await fs.readdir(dir)) total += (await fs.stat(path.join(dir, name))).size;
  return total;
}

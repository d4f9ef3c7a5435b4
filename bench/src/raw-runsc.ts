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

  /** `runsc restore --detach` of `imageDir` into a new sandbox `id`, on a bundle of its own. */
  async restore(id: string, imageDir: string): Promise<void> {
    await this.detached(["restore", "--detach", `--image-path=${imageDir}`, `--bundle=${await this.bundle(id)}`, id]);
  }

  /** `runsc checkpoint --leave-running --compression=none` into `imageDir` (made here, must not exist). */
  async checkpoint(id: string, imageDir: string): Promise<void> {
    await fs.mkdir(imageDir);
    await run("runsc", [`--root=${this.root}`, "checkpoint", "--leave-running", "--compression=none", `--image-path=${imageDir}`, id]);
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

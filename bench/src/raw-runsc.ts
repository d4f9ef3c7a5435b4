/**
 * The raw runtime the benchmarks compare Capsule with: `runsc run --detach` of a plain OCI bundle
 * on the same base image (read-only root; gVisor adds its own tmpfs /tmp), `runsc exec` into it.
 * No network, no disk image, no agent: what gVisor alone costs on this host.
 * @module
 */
import { execFile, spawn } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export class RawRunsc {
  /** runsc's state dir for these sandboxes (`--root`), under `dir`. */
  readonly root: string;

  /** `dir`: scratch space for the bundles and runsc's state; `rootfs`: the image's root to run. */
  constructor(
    private readonly dir: string,
    private readonly rootfs: string,
  ) {
    this.root = path.join(dir, "root");
  }

  async bundle(id: string): Promise<string> {
    const b = path.join(this.dir, id);
    await fs.mkdir(b, { recursive: true });
    await run("runsc", ["spec", "--bundle", b, "--", "sleep", "infinity"]);
    const spec = JSON.parse(await fs.readFile(path.join(b, "config.json"), "utf8"));
    spec.root = { path: this.rootfs, readonly: true };
    spec.process.terminal = false;
    await fs.writeFile(path.join(b, "config.json"), JSON.stringify(spec));
    return b;
  }

  async start(id: string): Promise<void> {
    const b = await this.bundle(id);
    // runsc run --detach leaves its stdio open in the sandbox: wait for exit, never for output.
    await new Promise<void>((resolve, reject) => {
      const c = spawn("runsc", [`--root=${this.root}`, "--network=none", "--platform=systrap", "run", "--detach", `--bundle=${b}`, id], { stdio: "ignore" });
      c.on("error", reject);
      c.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`runsc run exited ${code}`))));
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

import fs from "node:fs/promises";
import { run, runDetachedTo } from "../host/run.js";
import { freezeContainer, removeContainerCgroups, thawContainer } from "./cgroups.js";
import type { NetworkStack } from "../config.js";
import type { Runtime } from "./types.js";

/**
 * Both runtimes speak the OCI runtime CLI (`state`, `pause`, `resume`, `delete`, `list`); they
 * differ in global flags and in how the container joins its network namespace.
 */
export abstract class OciCliRuntime implements Runtime {
  abstract readonly name: "runsc" | "runc";
  abstract readonly netnsInSpec: boolean;
  abstract readonly network: NetworkStack | undefined;
  abstract readonly canCheckpoint: boolean;

  constructor(
    protected readonly bin: string,
    protected readonly root: string,
  ) {}

  protected abstract globalArgs(): string[];
  protected abstract runArgv(id: string, bundleDir: string, netnsPath: string): { cmd: string; args: string[] };

  abstract checkpoint(id: string, imageDir: string): Promise<void>;
  abstract restore(id: string, imageDir: string, bundleDir: string, netnsPath: string, logFile: string): Promise<void>;
  abstract setHostname(id: string, hostname: string): Promise<void>;

  async run(id: string, bundleDir: string, netnsPath: string, logFile: string): Promise<void> {
    const { cmd, args } = this.runArgv(id, bundleDir, netnsPath);
    await this.startDetached(cmd, args, logFile, "start");
  }

  /** Runs a command that starts a sandbox and detaches (`run`, `restore`), its output to `logFile`. */
  protected async startDetached(cmd: string, args: string[], logFile: string, what: string, timeoutMs?: number): Promise<void> {
    await fs.mkdir(this.root, { recursive: true, mode: 0o700 });
    const log = await fs.open(logFile, "a", 0o600);
    try {
      await runDetachedTo(cmd, args, log.fd, timeoutMs);
    } catch (err) {
      const tail = (await fs.readFile(logFile, "utf8").catch(() => "")).split("\n").slice(-15).join("\n");
      throw new Error(`${this.name} could not ${what} the sandbox: ${(err as Error).message}\n${tail}`, { cause: err });
    } finally {
      await log.close();
    }
  }

  async state(id: string): Promise<string> {
    try {
      const { stdout } = await run(this.bin, [...this.globalArgs(), "state", id]);
      return (JSON.parse(stdout) as { status: string }).status;
    } catch {
      return "absent";
    }
  }

  async pause(id: string): Promise<void> {
    await run(this.bin, [...this.globalArgs(), "pause", id]);
  }

  async resume(id: string): Promise<void> {
    await run(this.bin, [...this.globalArgs(), "resume", id]);
  }

  freeze(id: string): Promise<boolean> {
    return freezeContainer(id);
  }

  thaw(id: string): Promise<void> {
    return thawContainer(id);
  }

  async destroy(id: string): Promise<void> {
    if ((await this.state(id)) !== "absent") {
      await run(this.bin, [...this.globalArgs(), "delete", "--force", id], { timeoutMs: 60_000 }).catch(async (err) => {
        if ((await this.state(id)) !== "absent") throw err;
      });
    }
    await removeContainerCgroups(id);
  }

  async list(): Promise<string[]> {
    try {
      const { stdout } = await run(this.bin, [...this.globalArgs(), "list", "--format", "json"]);
      const parsed = JSON.parse(stdout) as Array<{ id: string }> | null;
      return (parsed ?? []).map((c) => c.id);
    } catch {
      return [];
    }
  }
}

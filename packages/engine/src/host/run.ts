import { execFile, spawn } from "node:child_process";

export interface RunResult {
  stdout: string;
  stderr: string;
}

export class CommandError extends Error {
  constructor(
    readonly argv: string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`${argv.join(" ")} failed (exit ${exitCode}): ${stderr.trim() || "no output"}`);
    this.name = "CommandError";
  }
}

/**
 * Runs a host command and resolves with its output; rejects with a {@link CommandError} that
 * carries stderr. No shell is involved, so arguments are never re-parsed.
 */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024, encoding: "utf8" },
      (err, stdout, stderr) => {
        if (err) {
          const code = typeof err.code === "number" ? err.code : null;
          reject(new CommandError([cmd, ...args], code, stderr || err.message));
        } else resolve({ stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Like {@link run} but never rejects: for teardown steps where "already gone" is success. */
export async function runQuiet(cmd: string, args: string[]): Promise<boolean> {
  try {
    await run(cmd, args);
    return true;
  } catch {
    return false;
  }
}

/** Starts a command fully detached from our stdio (runsc run -detach keeps inherited fds open). */
export function runDetachedTo(cmd: string, args: string[], logFd: number, timeoutMs = 60_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", logFd, logFd] });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new CommandError([cmd, ...args], code, signal ? `killed by ${signal}` : "see log"));
    });
  });
}

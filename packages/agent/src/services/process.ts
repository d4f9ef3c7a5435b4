import { spawn } from "node:child_process";
import type { Readable } from "node:stream";
import { AgentError } from "../errors.js";
import { helperCommand } from "../launch.js";
import type { UserInfo } from "../users.js";
import { OUT_OF_RESOURCES, zygoteSpawn } from "../zygote.js";

/** A service's command, started like an exec: as the user, in its own session and process group. */
export interface ServiceProcess {
  pid: number;
  stdout: Readable;
  stderr: Readable;
  /** The process ended (output may go on while something it left behind holds the pipes). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts `argv` through the fork server, or, without one, Node's spawn of the spawn helper: the
 * same two paths as an exec, so a service gets exactly the user's uid, gid and groups. Its stdin
 * is at EOF from the start.
 */
export async function startServiceProcess(user: UserInfo, argv: string[], env: Record<string, string>, cwd: string): Promise<ServiceProcess> {
  const fast = zygoteSpawn(user, argv, env, cwd);
  if (fast) {
    const child = await fast;
    child.stdin.end();
    return { pid: child.pid, stdout: child.stdout, stderr: child.stderr, exited: exitOf(child) };
  }
  const { file, args } = helperCommand(user, argv);
  const child = spawn(file, args, { cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const pid = await new Promise<number>((resolve, reject) => {
    child.once("spawn", () => resolve(child.pid as number));
    child.once("error", (err: NodeJS.ErrnoException) =>
      reject(new AgentError(OUT_OF_RESOURCES.has(err.code ?? "") ? "RESOURCE_EXHAUSTED" : "SPAWN_FAILED", `cannot start ${file}: ${err.message}`)),
    );
  });
  return { pid, stdout: child.stdout, stderr: child.stderr, exited: exitOf(child) };
}

function exitOf(child: NodeJS.EventEmitter): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => child.once("exit", (code: number | null, signal: NodeJS.Signals | null) => resolve({ code, signal })));
}

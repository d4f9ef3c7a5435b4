import { spawn } from "node:child_process";
import type { Readable } from "node:stream";
import { AgentError } from "../errors.js";
import { helperCommand, killGroup } from "../launch.js";
import type { UserInfo } from "../users.js";
import { OUT_OF_RESOURCES, zygoteSpawn } from "../zygote.js";

/**
 * After a command exits, how long its remaining output may take to arrive before its end is
 * reported anyway: a process it left behind may hold the pipes open for as long as it lives.
 */
const OUTPUT_LINGER_MS = 1_000;

/** A service's command, started like an exec: as the user, in its own session and process group. */
export interface ServiceProcess {
  pid: number;
  stdout: Readable;
  stderr: Readable;
  /** The process ended and its output was read (or OUTPUT_LINGER_MS passed: see there). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /**
   * Signals the command's process group (what it left behind too): by its number while the
   * command lives; once it exited, only while no process has that pid. A group's number stays
   * taken while any member lives (Linux and gVisor alike), so a process with that pid after the
   * exit means the group is gone and the number went to a newcomer, whose group is not ours.
   */
  signalGroup(signal: NodeJS.Signals): void;
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
    return { pid: child.pid, stdout: child.stdout, stderr: child.stderr, exited: endOf(child, child.stdout, child.stderr), signalGroup: groupSignaller(child, child.pid) };
  }
  const { file, args } = helperCommand(user, argv);
  const child = spawn(file, args, { cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const pid = await new Promise<number>((resolve, reject) => {
    child.once("spawn", () => resolve(child.pid as number));
    child.once("error", (err: NodeJS.ErrnoException) =>
      reject(new AgentError(OUT_OF_RESOURCES.has(err.code ?? "") ? "RESOURCE_EXHAUSTED" : "SPAWN_FAILED", `cannot start ${file}: ${err.message}`)),
    );
  });
  return { pid, stdout: child.stdout, stderr: child.stderr, exited: endOf(child, child.stdout, child.stderr), signalGroup: groupSignaller(child, pid) };
}

/** {@link ServiceProcess.signalGroup} for `child`, which leads group `pid` (exported for its test). */
export function groupSignaller(child: NodeJS.EventEmitter, pid: number): (signal: NodeJS.Signals) => void {
  let leaderExited = false; // reaped: the exit event comes after the wait
  child.once("exit", () => (leaderExited = true));
  return (signal) => {
    if (!leaderExited || !processExists(pid)) killGroup(pid, signal);
  };
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function endOf(child: NodeJS.EventEmitter, ...outputs: Readable[]): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const closed = Promise.all(outputs.map((o) => new Promise((resolve) => (o.closed ? resolve(undefined) : o.once("close", resolve)))));
  const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once("exit", (code: number | null, signal: NodeJS.Signals | null) => resolve({ code, signal })));
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([closed, new Promise((resolve) => (timer = setTimeout(resolve, OUTPUT_LINGER_MS)))]);
  clearTimeout(timer);
  return exit;
}

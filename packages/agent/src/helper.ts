import { spawn, type ChildProcess, type StdioOptions } from "node:child_process";
import type { AgentErrorCode } from "@capsule/agent-protocol";
import { config } from "./config.js";
import { AgentError } from "./errors.js";
import { helperArgv } from "./launch.js";
import type { UserInfo } from "./users.js";

/** capsule-spawn's exit codes (see native/capsule-spawn.c) and what they mean to the host. */
const EXIT_CODES: Record<number, AgentErrorCode> = {
  2: "INTERNAL", // usage: an agent bug
  3: "SPAWN_FAILED", // could not become the user
  10: "FILE_NOT_FOUND",
  11: "PERMISSION_DENIED",
  12: "IS_A_DIRECTORY",
  13: "NOT_A_DIRECTORY",
  14: "ALREADY_EXISTS",
  15: "DIRECTORY_NOT_EMPTY",
  16: "BAD_REQUEST", // not a regular file
  17: "INTERNAL", // any other errno; the message says which
};
const MAX_STDERR = 8 * 1024;

/** Starts capsule-spawn in one of its file modes, as `user`, with nothing of the agent's env. */
export function spawnHelper(user: UserInfo | undefined, args: string[], stdio: StdioOptions): ChildProcess {
  const argv = user ? helperArgv(user, args) : args;
  return spawn(config.spawnHelper, argv, { stdio, env: {}, cwd: "/" });
}

/** Resolves when the helper exits 0; otherwise rejects with its message and mapped code. */
export function helperDone(child: ChildProcess): Promise<void> {
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    if (stderr.length < MAX_STDERR) stderr += chunk.toString("utf8");
  });
  const done = new Promise<void>((resolve, reject) => {
    child.once("error", (err) => reject(new AgentError("SPAWN_FAILED", `cannot start ${config.spawnHelper}: ${err.message}`)));
    child.once("close", (code, signal) => {
      if (code === 0) return resolve();
      const message = stderr.trim().replace(/^capsule-spawn: /, "") || `capsule-spawn ended with ${signal ?? `status ${code}`}`;
      reject(new AgentError((code !== null && EXIT_CODES[code]) || "INTERNAL", message));
    });
  });
  // Callers may still be busy elsewhere when it fails; they await it in due course.
  done.catch(() => undefined);
  return done;
}

/** Runs the helper to completion and returns its stdout. */
export async function runHelper(user: UserInfo | undefined, args: string[]): Promise<Buffer> {
  const child = spawnHelper(user, args, ["ignore", "pipe", "pipe"]);
  const chunks: Buffer[] = [];
  child.stdout?.on("data", (chunk: Buffer) => chunks.push(chunk));
  await helperDone(child);
  return Buffer.concat(chunks);
}

import fs from "node:fs/promises";
import path from "node:path";
import { config } from "./config.js";
import { AgentError } from "./errors.js";
import type { UserInfo } from "./users.js";

export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/**
 * The most of the VM's env or workdir file read (both are read on every exec). Root in the VM may
 * put anything there: a bigger file, or one that is not a regular file (a FIFO would block the
 * read), counts as absent.
 */
const VM_FILE_MAX_BYTES = 64 * 1024;

/** A small regular file's text, or undefined (missing, too big, or not a regular file). */
async function readVmFile(file: string): Promise<string | undefined> {
  const handle = await fs.open(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY).catch(() => undefined);
  if (!handle) return undefined;
  try {
    const st = await handle.stat();
    return st.isFile() && st.size <= VM_FILE_MAX_BYTES ? await handle.readFile("utf8") : undefined;
  } catch {
    return undefined;
  } finally {
    await handle.close();
  }
}

/** argv for capsule-spawn: become `user` exactly (uid, gid, groups), then run `rest`. */
export function helperArgv(user: UserInfo, rest: string[]): string[] {
  return [String(user.uid), String(user.gid), user.groups.length > 0 ? user.groups.join(",") : "-", ...rest];
}

export function helperCommand(user: UserInfo, argv: string[]): { file: string; args: string[] } {
  return { file: config.spawnHelper, args: helperArgv(user, ["--", ...argv]) };
}

/** A clean environment for the user: nothing of the agent's own leaks into it. */
export function userEnv(user: UserInfo, extra: Record<string, string> | undefined): Record<string, string> {
  return { PATH: DEFAULT_PATH, HOME: user.home, USER: user.name, LOGNAME: user.name, SHELL: user.shell, ...extra };
}

/**
 * The VM's environment (a Dockerfile's ENV, written by its build), read at each start like the
 * workdir. A file that is missing, not JSON or not an object of strings counts as empty; a
 * malformed entry is dropped rather than failing every exec of the VM.
 */
export async function vmEnv(): Promise<Record<string, string>> {
  const text = await readVmFile(config.envFile);
  if (text === undefined) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return {};
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return {};
  return Object.fromEntries(Object.entries(parsed).filter((e): e is [string, string] => typeof e[1] === "string" && /^[A-Za-z_][A-Za-z0-9_]*$/.test(e[0]) && !e[1].includes("\0")));
}

async function isDirectory(dir: string): Promise<boolean> {
  return fs.stat(dir).then(
    (st) => st.isDirectory(),
    () => false,
  );
}

/**
 * The VM's default working directory (a spec's `workdir`, written by its build), when the file
 * names an existing directory. Read on every call: a VM booted from another snapshot, or a
 * tenant editing the file, takes effect at once, and the file is a few bytes.
 */
async function vmWorkdir(): Promise<string | undefined> {
  const text = await readVmFile(config.workdirFile);
  const dir = text?.trim();
  return dir?.startsWith("/") && (await isDirectory(dir)) ? dir : undefined;
}

/** The requested cwd, which must exist; by default the VM's workdir, else HOME, else /. */
export async function resolveCwd(user: UserInfo, cwd: string | undefined): Promise<string> {
  if (cwd === undefined) return (await vmWorkdir()) ?? ((await isDirectory(user.home)) ? user.home : "/");
  let st;
  try {
    st = await fs.stat(cwd);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new AgentError(code === "ENOENT" ? "FILE_NOT_FOUND" : "BAD_REQUEST", `working directory ${cwd}: ${code ?? String(err)}`);
  }
  if (!st.isDirectory()) throw new AgentError("NOT_A_DIRECTORY", `working directory ${cwd} is not a directory`);
  return cwd;
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    await fs.access(file, fs.constants.X_OK);
    return (await fs.stat(file)).isFile();
  } catch {
    return false;
  }
}

/**
 * Fails early, with a message naming the program, when `program` cannot be found; otherwise the
 * user would only see capsule-spawn's complaint and exit status 127.
 */
export async function assertRunnable(program: string, cwd: string, searchPath: string | undefined): Promise<void> {
  const dirs = program.includes("/") ? [""] : (searchPath ?? DEFAULT_PATH).split(":");
  for (const dir of dirs) if (await isExecutable(path.resolve(cwd, dir, program))) return;
  throw new AgentError("SPAWN_FAILED", `${program}: no such executable in the VM`);
}

/** Signals a whole process group, which the child leads; a group already gone is fine. */
export function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}

import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { FrameType, parseExecControl, type ExecRequest, type Frame } from "@capsule/agent-protocol";
import type { Conn } from "./conn.js";
import { AgentError, badRequest } from "./errors.js";
import { assertRunnable, helperCommand, killGroup, resolveCwd, userEnv, vmEnv } from "./launch.js";
import { resolveUser } from "./users.js";
import { OUT_OF_RESOURCES, zygoteSpawn, type Spawned } from "./zygote.js";

const SHELL = "/bin/sh";

/** Process groups of commands still running, ended when the agent shuts down. */
const running = new Set<number>();

export function killRunningCommands(): void {
  for (const pid of running) killGroup(pid, "SIGKILL");
}

/**
 * Runs `/bin/sh -c COMMAND` as the user, in its own session and process group so a timeout, a
 * signal from the host or the host hanging up reaches every process the command started.
 * `exit` is sent once the process has exited and its output pipes have closed, so it always
 * follows the last byte of output.
 */
export async function runExec(conn: Conn, req: ExecRequest): Promise<void> {
  const user = await resolveUser(req.user);
  const [cwd, base] = await Promise.all([resolveCwd(user, req.cwd), vmEnv()]);
  const env = userEnv(user, { ...base, ...req.env });
  const argv = [SHELL, "-c", req.command];
  // The fork server starts a command in a few ms; Node's own spawn (a fork of this big process)
  // costs 60-110 ms under gVisor and is the fallback. The fork server reports a missing shell
  // itself (SPAWN_FAILED, from its exec's ENOENT), so only the fallback checks for it first.
  const fast = zygoteSpawn(user, argv, env, cwd);
  let child: Spawned | ChildProcessWithoutNullStreams;
  if (fast) child = await fast;
  else {
    await assertRunnable(SHELL, "/", undefined);
    const { file, args } = helperCommand(user, argv);
    child = spawn(file, args, { cwd, env, detached: true, stdio: "pipe" });
    child.on("error", (err: NodeJS.ErrnoException) =>
      conn.fail(new AgentError(OUT_OF_RESOURCES.has(err.code ?? "") ? "RESOURCE_EXHAUSTED" : "SPAWN_FAILED", `cannot start ${file}: ${err.message}`)),
    );
  }
  const pid = child.pid;
  if (pid === undefined) return; // the "error" event follows
  running.add(pid);
  conn.sendJson({ type: "started", pid });
  conn.pipeFrom(child.stdout, FrameType.Stdout);
  conn.pipeFrom(child.stderr, FrameType.Stderr);
  // The command may exit without reading its input; later writes then fail with EPIPE.
  child.stdin.on("error", () => undefined);

  let timedOut = false;
  let closed = false;
  const timer = req.timeoutMs
    ? setTimeout(() => {
        timedOut = true;
        killGroup(pid, "SIGKILL");
      }, req.timeoutMs)
    : undefined;
  child.once("close", (code, signal) => {
    closed = true;
    running.delete(pid);
    clearTimeout(timer);
    conn.sendJson({ type: "exit", code, signal, timedOut });
    conn.finish();
  });
  // A host that hangs up ends the command; a checkpoint closing the connection does not.
  conn.onClose(() => {
    if (!closed && !conn.droppedForCheckpoint) killGroup(pid, "SIGKILL");
  });
  conn.onFrames((frame) => handleFrame(conn, child, pid, frame));
}

function handleFrame(conn: Conn, child: Spawned | ChildProcessWithoutNullStreams, pid: number, frame: Frame): void {
  switch (frame.type) {
    case FrameType.Stdin:
      if (child.stdin.writable) conn.writeTo(child.stdin, frame.payload);
      break;
    case FrameType.Eof:
      child.stdin.end();
      break;
    case FrameType.Json:
      killGroup(pid, parseExecControl(frame.payload).signal);
      break;
    default:
      throw badRequest(`unexpected frame type ${frame.type} during exec`);
  }
}

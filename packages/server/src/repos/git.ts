/**
 * The host's one way to run git on a tenant-named repository: no system or global config, no
 * hooks, no credential prompts or helpers, only the schemes the operator allowed, every object
 * checked (`transfer.fsckObjects`), no redirects (an allowed URL cannot send git elsewhere), no
 * background maintenance. Each run has a deadline and a bound on what it prints. What a
 * repository carries (hooks, `.gitattributes` filters, config) never reaches this side: the
 * mirrors are bare, nothing is checked out on the host, and filter drivers come only from config,
 * which a repository cannot set.
 * @module
 */
import { spawn } from "node:child_process";
import type { GitUser } from "./git-user.js";

/** Bytes of stdout/stderr a git run may print before it is killed (ls-remote of a big repo fits). */
export const GIT_OUTPUT_MAX_BYTES = 16 * 1024 * 1024;

export class GitError extends Error {
  constructor(
    message: string,
    readonly stderr: string,
    readonly timedOut: boolean,
  ) {
    super(message);
  }
}

/** `-c` settings that hold for every run, whatever the config files (there are none) say. */
function hardening(schemes: readonly string[]): string[] {
  const settings = [
    "protocol.allow=never",
    ...schemes.map((s) => `protocol.${s}.allow=always`),
    "core.hooksPath=/dev/null",
    "transfer.fsckObjects=true",
    "http.followRedirects=false",
    "credential.helper=",
    "core.fsmonitor=false",
    "submodule.recurse=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "core.askPass=",
  ];
  return settings.flatMap((s) => ["-c", s]);
}

/** The environment git runs with: nothing of the server's (no proxy secrets, no HOME config). */
function gitEnv(): NodeJS.ProcessEnv {
  return {
    PATH: "/usr/bin:/bin",
    HOME: "/nonexistent",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_TERMINAL_PROMPT: "0",
    GIT_ASKPASS: "/bin/false",
    SSH_ASKPASS: "/bin/false",
    GIT_PROTOCOL_FROM_USER: "0",
    LC_ALL: "C",
  };
}

export interface GitRun {
  /** The git directory (`--git-dir`), when the command works on a mirror. */
  gitDir?: string;
  timeoutMs: number;
  /** Schemes git may use (`protocol.<s>.allow`); none for local-only commands. */
  schemes?: readonly string[];
  /** Called while git runs; a string it returns kills git and becomes the error (a size bound). */
  watch?: () => Promise<string | undefined>;
  watchEveryMs?: number;
  /** The unprivileged user git runs as; absent: the server's own (root), see git-user.ts. */
  user?: GitUser | undefined;
}

/** Runs git with the hardening above; resolves its stdout, rejects a {@link GitError} with its stderr. */
export function runGit(args: string[], run: GitRun): Promise<string> {
  const full = [...hardening(run.schemes ?? []), ...(run.gitDir ? ["--git-dir", run.gitDir] : []), ...args];
  return new Promise((resolve, reject) => {
    // With uid/gid, Node (libuv) also drops the supplementary groups before exec.
    const as = run.user ? { uid: run.user.uid, gid: run.user.gid, cwd: "/" } : {};
    const child = spawn("git", full, { env: gitEnv(), stdio: ["ignore", "pipe", "pipe"], detached: true, ...as });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let printed = 0;
    let killedFor: string | undefined;
    let timedOut = false;
    // detached: git's own children (remote-https, index-pack) are in its process group and die with it.
    const kill = (why: string) => {
      killedFor ??= why;
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill(`git ${args[0]} ran past ${run.timeoutMs / 1000} s`);
    }, run.timeoutMs);
    const watcher = run.watch
      ? setInterval(() => {
          void run.watch!().then((why) => why !== undefined && kill(why), () => undefined);
        }, run.watchEveryMs ?? 250)
      : undefined;
    const collect = (into: Buffer[]) => (b: Buffer) => {
      printed += b.length;
      if (printed > GIT_OUTPUT_MAX_BYTES) kill(`git ${args[0]} printed more than ${GIT_OUTPUT_MAX_BYTES} bytes`);
      else into.push(b);
    };
    child.stdout.on("data", collect(out));
    child.stderr.on("data", collect(err));
    child.once("error", (e) => kill(e.message));
    child.once("close", (code) => {
      clearTimeout(timer);
      if (watcher) clearInterval(watcher);
      const stderr = Buffer.concat(err).toString("utf8");
      if (killedFor !== undefined) reject(new GitError(killedFor, stderr, timedOut));
      else if (code !== 0) reject(new GitError(`git ${args[0]} exited ${code}: ${lastLine(stderr)}`, stderr, false));
      else resolve(Buffer.concat(out).toString("utf8"));
    });
  });
}

/** The last line of a command's output, at most 500 characters: what an error message quotes. */
export function lastLine(s: string): string {
  return s.trim().split("\n").at(-1)?.slice(0, 500) ?? "";
}

/**
 * `spawnClaudeCodeProcess` for the Claude Agent SDK on Capsule's streaming exec (`vm.spawn`):
 * the CLI runs in the VM with real pipes (so it speaks stream-json, no PTY tricks, no sentinel
 * byte), stdin EOF reaches it, its exit code comes back, and abort/kill signal it. Only the
 * environment the CLI needs crosses over (`ANTHROPIC_*`, `CLAUDE_CODE_*`, `CLAUDECODE`), with
 * `HOME` and `PATH` set for the Linux user.
 * @module
 */
import { EventEmitter } from "node:events";
import os from "node:os";
import type { Readable, Writable } from "node:stream";
import { shellJoin } from "@capsule/contract/shell";
import { WS_SIGNALS } from "@capsule/contract/wire";
import type { SpawnSignal } from "../spawn.js";
import type { Vm } from "../vm.js";

/** What the Agent SDK passes to `spawnClaudeCodeProcess`. */
export interface ClaudeSpawnOptions {
  command: string;
  args: string[];
  cwd?: string;
  env: Record<string, string | undefined>;
  signal: AbortSignal;
}

/** What the Agent SDK expects back (a subset of Node's ChildProcess). */
export interface ClaudeSpawnedProcess {
  stdin: Writable;
  stdout: Readable;
  readonly killed: boolean;
  readonly exitCode: number | null;
  readonly signalCode: NodeJS.Signals | null;
  kill(signal?: NodeJS.Signals | number): boolean;
  on(event: "exit" | "error", listener: (...args: never[]) => void): void;
  once(event: "exit" | "error", listener: (...args: never[]) => void): void;
  off(event: "exit" | "error", listener: (...args: never[]) => void): void;
}

export interface ClaudeCodeSpawnerOptions {
  /** Linux user running the CLI. Default root. */
  user?: string;
  /** Working directory. Default: the SDK's `cwd` when it is absolute, else the user's home. */
  cwd?: string;
  /** HOME for the CLI. Default `/root` or `/home/<user>`. */
  home?: string;
  /** The CLI in the VM. Default: the SDK's `command` when it names a VM path (`claude`, `/usr/local/bin/…`, `/root/.local/bin/…`), else `claude`. */
  executable?: string;
  /** Extra variables set for the CLI (e.g. `IS_SANDBOX`). */
  env?: Record<string, string>;
  /** Receives the CLI's stderr (otherwise discarded). */
  stderr?: (chunk: Buffer) => void;
}

const FORWARD = /^(ANTHROPIC_[A-Za-z0-9_]*|CLAUDE_CODE_[A-Za-z0-9_]*|CLAUDECODE)$/;
/** A Node signal (name or number) as one the API takes; any other becomes SIGKILL. */
function spawnSignal(signal: NodeJS.Signals | number): SpawnSignal {
  const name = typeof signal === "number" ? Object.entries(os.constants.signals).find(([, n]) => n === signal)?.[0] : signal;
  return (WS_SIGNALS as readonly string[]).includes(name ?? "") ? (name as SpawnSignal) : "SIGKILL";
}

/** Only the variables Claude Code needs from the SDK's env. */
export function claudeEnv(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && FORWARD.test(k)) out[k] = v;
  return out;
}

function vmCommand(command: string, explicit: string | undefined): string {
  if (explicit) return explicit;
  if (command === "claude" || /^\/(usr\/local\/bin|usr\/bin|bin|root\/\.local\/bin|home\/[^/]+\/\.local\/bin)\/claude$/.test(command)) return command;
  return "claude"; // a host path (the SDK's bundled binary) means nothing in the VM
}

/** Returns a `spawnClaudeCodeProcess` that runs Claude Code in `vm` over `vm.spawn`. */
export function claudeCodeSpawner(vm: Vm, opts: ClaudeCodeSpawnerOptions = {}): (options: ClaudeSpawnOptions) => ClaudeSpawnedProcess {
  return (options) => {
    const user = opts.user ?? vm.username;
    const home = opts.home ?? (!user || user === "root" ? "/root" : `/home/${user}`);
    const cwd = opts.cwd ?? (options.cwd?.startsWith("/") ? options.cwd : home);
    const env = {
      ...claudeEnv(options.env),
      ...opts.env,
      HOME: home,
      PATH: `${home}/.local/bin:/usr/local/bin:/usr/bin:/bin`,
    };
    const cmd = shellJoin([vmCommand(options.command, opts.executable), ...options.args]);
    const p = vm.spawn(`exec ${cmd}`, { ...(user ? { user } : {}), cwd, env });
    const events = new EventEmitter();
    let killed = false;
    let exitCode: number | null = null;
    let signalCode: NodeJS.Signals | null = null;
    p.stderr.on("data", (c: Buffer) => opts.stderr?.(c)); // always drained: a full stderr would stall stdout
    p.exited.then(
      (e) => {
        exitCode = e.code;
        signalCode = (e.signal as NodeJS.Signals | null) ?? null;
        events.emit("exit", e.signal ? null : e.code, signalCode);
      },
      (err: unknown) => {
        if (events.listenerCount("error") > 0) events.emit("error", err);
        events.emit("exit", null, null);
      },
    );
    const kill = (signal: NodeJS.Signals | number = "SIGTERM"): boolean => {
      if (exitCode !== null || signalCode !== null) return false;
      killed = true;
      p.kill(spawnSignal(signal));
      return true;
    };
    const onAbort = () => kill("SIGTERM");
    if (options.signal.aborted) onAbort();
    else options.signal.addEventListener("abort", onAbort, { once: true });
    void p.exited.finally(() => options.signal.removeEventListener("abort", onAbort)).catch(() => undefined);
    return {
      stdin: p.stdin,
      stdout: p.stdout,
      get killed() {
        return killed;
      },
      get exitCode() {
        return exitCode;
      },
      get signalCode() {
        return signalCode;
      },
      kill,
      on: (e, l) => void events.on(e, l as (...a: unknown[]) => void),
      once: (e, l) => void events.once(e, l as (...a: unknown[]) => void),
      off: (e, l) => void events.off(e, l as (...a: unknown[]) => void),
    };
  };
}

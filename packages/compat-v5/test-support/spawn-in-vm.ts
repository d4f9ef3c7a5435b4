/**
 * The seed guide's Agent SDK bridge (`spawnInVm`) on the `freestyle@0.2.17` PTY, shared by the
 * Node 20 port of the guide (v5-seed.test.ts) and the Node 22 walk-through (walkthrough.ts), so
 * both drive `query()` through the same code. Nothing here imports the server or node:test.
 */
import { EventEmitter } from "node:events";
import { Readable, Writable } from "node:stream";
import type { SpawnedProcess, SpawnOptions } from "@anthropic-ai/claude-agent-sdk";
import type { PtySession, Vm } from "freestyle";

const sh = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`; // single-quote for the shell

/**
 * The guide's `spawnInVm` on 0.2.17's PTY. Its logic is the guide's (raw mode, the 0x1E sentinel,
 * `cat | claude | cat`, SIGKILL on abort); only the client's API differs: the shell is opened as
 * `linuxUser: "root"` (the guide's paths are root's, and 0.2's default user is uid 1000), the
 * signal is `"sigkill"`, and `onExit` gets a number.
 */
export function spawnInVm(vm: Vm) {
  return (options: SpawnOptions): SpawnedProcess => {
    const events = new EventEmitter();
    const stdout = new Readable({ read() {} });
    let session: PtySession | null = null;
    let exitCode: number | null = null;
    let killed = false;
    const pending: Buffer[] = []; // writes that arrive before the PTY is open

    const stdin = new Writable({
      write(chunk: Buffer, _enc, cb) {
        const buf = Buffer.from(chunk);
        if (session) session.write(buf);
        else pending.push(buf);
        cb();
      },
    });

    // Bootstrap: raw mode → forward the API key (+ the SDK's own markers) → cd → print the
    // sentinel → run the CLI as `cat | claude | cat` so its stdio are pipes (headless
    // protocol), not the tty. \x1e is the first byte of clean output.
    const SENTINEL = "\x1e";
    const keep = new Set(["ANTHROPIC_API_KEY", "CLAUDE_CODE_ENTRYPOINT", "CLAUDECODE"]);
    const exports = Object.entries(options.env)
      .filter((e): e is [string, string] => e[1] !== undefined && keep.has(e[0]))
      .map(([k, v]) => `export ${k}=${sh(v)};`)
      .join(" ");
    const cli = [options.command, ...options.args].map(sh).join(" ");
    const boot =
      `stty -echo raw -onlcr 2>/dev/null; export HOME=/root PATH=/root/.local/bin:/usr/bin:/bin; ` +
      `${exports} cd ${sh(options.cwd ?? "/root")}; printf ${sh(SENTINEL)}; cat | ${cli} | cat\n`;

    let started = false;
    let head = "";
    vm.pty
      .open({
        linuxUser: "root",
        cols: 80,
        rows: 24,
        onData: (bytes) => {
          if (started) return void stdout.push(Buffer.from(bytes));
          head += Buffer.from(bytes).toString("utf8");
          const i = head.indexOf(SENTINEL);
          if (i !== -1) {
            started = true;
            const rest = head.slice(i + SENTINEL.length);
            if (rest) stdout.push(Buffer.from(rest, "utf8"));
          }
        },
        onExit: (code) => {
          exitCode = code;
          stdout.push(null);
          events.emit("exit", killed ? 0 : code, null); // we killed it = clean
        },
        onError: (err) => events.emit("error", err),
      })
      .then((s) => {
        session = s;
        s.write(boot);
        for (const buf of pending.splice(0)) s.write(buf);
      })
      .catch((err: unknown) => events.emit("error", err));

    // The PTY can't deliver stdin-EOF, so the CLI won't exit on its own: tear it down when the
    // SDK aborts or calls kill() (the loop breaks on `result`).
    const teardown = () => {
      killed = true;
      session?.signal("sigkill");
    };
    options.signal.addEventListener("abort", teardown);

    return {
      stdin,
      stdout,
      get killed() {
        return killed;
      },
      get exitCode() {
        return exitCode;
      },
      kill() {
        teardown();
        return true;
      },
      on: (e: "exit" | "error", l: (...a: never[]) => void) => void events.on(e, l as (...a: unknown[]) => void),
      once: (e: "exit" | "error", l: (...a: never[]) => void) => void events.once(e, l as (...a: unknown[]) => void),
      off: (e: "exit" | "error", l: (...a: never[]) => void) => void events.off(e, l as (...a: unknown[]) => void),
    };
  };
}

/* eslint-disable */
// The seed guide's `spawnInVm` bridge (section "Drive Claude Code from the Claude Agent SDK"),
// verbatim: it must work on @capsule/sdk's PTY unchanged. Lint is off for this file only, since
// it is the guide's code (it uses `any`, empty catches and expression statements).
import { Readable, Writable } from "node:stream";
import { EventEmitter } from "node:events";

const sh = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`; // single-quote for the shell

export function spawnInVm(vm: any) {
  return (options: {
    command: string;
    args: string[];
    cwd?: string;
    env: Record<string, string | undefined>;
    signal: AbortSignal;
  }) => {
    const events = new EventEmitter();
    const stdout = new Readable({ read() {} });
    let session: any = null;
    let exitCode: number | null = null;
    let killed = false;
    const pending: Buffer[] = []; // writes that arrive before the PTY is open

    const stdin = new Writable({
      write(chunk, _enc, cb) {
        const buf = Buffer.from(chunk);
        session ? session.write(buf) : pending.push(buf);
        cb();
      },
    });

    // Bootstrap: raw mode → forward the API key (+ the SDK's own markers) →
    // cd → print the sentinel → run the CLI as `cat | claude | cat` so its
    // stdio are pipes (headless protocol), not the tty. \x1e is the first
    // byte of clean output.
    const SENTINEL = "\x1e";
    const keep = new Set(["ANTHROPIC_API_KEY", "CLAUDE_CODE_ENTRYPOINT", "CLAUDECODE"]);
    const exports = Object.entries(options.env)
      .filter(([k, v]) => v !== undefined && keep.has(k))
      .map(([k, v]) => `export ${k}=${sh(v as string)};`)
      .join(" ");
    const cli = [options.command, ...options.args].map(sh).join(" ");
    const boot =
      `stty -echo raw -onlcr 2>/dev/null; export HOME=/root PATH=/root/.local/bin:/usr/bin:/bin; ` +
      `${exports} cd ${sh(options.cwd ?? "/root")}; printf ${sh(SENTINEL)}; cat | ${cli} | cat\n`;

    let started = false;
    let head = "";
    vm.pty
      .open({
        cols: 80,
        rows: 24,
        onData: (bytes: Uint8Array) => {
          if (started) return stdout.push(Buffer.from(bytes));
          head += Buffer.from(bytes).toString("utf8");
          const i = head.indexOf(SENTINEL);
          if (i !== -1) {
            started = true;
            const rest = head.slice(i + SENTINEL.length);
            if (rest) stdout.push(Buffer.from(rest, "utf8"));
          }
        },
        onExit: (code: number | null) => {
          exitCode = code;
          stdout.push(null);
          events.emit("exit", killed ? 0 : code, null); // we killed it = clean
        },
        onError: (err: unknown) => events.emit("error", err),
      })
      .then((s: any) => {
        session = s;
        s.write(boot);
        for (const buf of pending.splice(0)) s.write(buf);
      })
      .catch((err: unknown) => events.emit("error", err));

    // The PTY can't deliver stdin-EOF, so the CLI won't exit on its own — tear
    // it down when the SDK aborts or calls kill() (the loop breaks on `result`).
    const teardown = () => {
      killed = true;
      try { session?.signal("SIGKILL"); } catch {}
    };
    options.signal.addEventListener("abort", teardown);

    return {
      stdin,
      stdout,
      get killed() { return killed; },
      get exitCode() { return exitCode; },
      kill() {
        teardown();
        return true;
      },
      on: (e: string, l: (...a: any[]) => void) => void events.on(e, l),
      once: (e: string, l: (...a: any[]) => void) => void events.once(e, l),
      off: (e: string, l: (...a: any[]) => void) => void events.off(e, l),
    };
  };
}

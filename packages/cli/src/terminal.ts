/**
 * Attaches the local terminal to a new PTY session in a VM (raw mode, window size follows,
 * Ctrl-] d detaches): what `capsule claude --interactive` uses.
 * @module
 */
import type { PtySession, Vm } from "@capsule/sdk";
import { EXIT } from "./api.js";

const DETACH_PREFIX = 0x1d; // Ctrl-]

/** Runs `exec` in a PTY of `vm` with the local terminal attached; resolves with the exit code. */
export async function attachTerminal(vm: Vm, exec: string): Promise<{ code: number; detached: boolean; sessionId: string }> {
  const stdin = process.stdin;
  const stdout = process.stdout;
  const size = () => ({ cols: stdout.columns || 80, rows: stdout.rows || 24 });
  let done!: (code: number) => void;
  const finished = new Promise<number>((r) => (done = r));
  stdin.setRawMode(true);
  let session: PtySession;
  try {
    session = await vm.pty.open({ ...size(), exec, onData: (b) => stdout.write(b), onExit: (code) => done(code ?? 0), onClose: () => done(EXIT.CONNECTION) });
  } catch (err) {
    stdin.setRawMode(false);
    throw err;
  }
  let detached = false;
  let prefix = false;
  const onInput = (chunk: Buffer) => {
    const out: number[] = [];
    for (const byte of chunk) {
      if (prefix) {
        prefix = false;
        if (byte === 0x64 /* d */ || byte === 0x04) {
          detached = true;
          if (out.length) session.write(Uint8Array.from(out));
          session.detach();
          done(EXIT.OK);
          return;
        }
        out.push(DETACH_PREFIX);
        if (byte === DETACH_PREFIX) continue;
      } else if (byte === DETACH_PREFIX) {
        prefix = true;
        continue;
      }
      out.push(byte);
    }
    if (out.length) session.write(Uint8Array.from(out));
  };
  const onResize = () => {
    if (!session.exited && !detached) session.resize(size());
  };
  stdin.resume();
  stdin.on("data", onInput);
  stdout.on("resize", onResize);
  const code = await finished;
  stdin.off("data", onInput);
  stdout.off("resize", onResize);
  stdin.setRawMode(false);
  stdin.pause();
  return { code, detached, sessionId: session.sessionId };
}

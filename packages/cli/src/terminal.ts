/**
 * Attaches the local terminal to a PTY session in a VM: raw mode from the start (keys typed while
 * connecting go to the VM, not the local line editor), the window size follows, Ctrl-] d
 * detaches (Ctrl-] twice sends one Ctrl-]). Used by `vm shell` and `claude --interactive`.
 * @module
 */
import type { PtySession } from "@capsule/sdk";
import { EXIT } from "./api.js";

const DETACH_PREFIX = 0x1d; // Ctrl-]

export interface TerminalSize {
  cols: number;
  rows: number;
}

export interface TerminalListeners {
  onData: (bytes: Uint8Array) => void;
  onExit: (code: number | null) => void;
  onClose: () => void;
}

/**
 * `connect` opens or attaches the session with the local size and these listeners. Resolves
 * when the session exits (its code), the user detaches (0) or the connection is lost
 * (EXIT.CONNECTION).
 */
export async function attachTerminal(
  connect: (size: TerminalSize, listeners: TerminalListeners) => Promise<PtySession>,
  onConnected?: (session: PtySession) => void,
): Promise<{ code: number; detached: boolean; session: PtySession }> {
  const stdin = process.stdin;
  const stdout = process.stdout;
  const size = () => ({ cols: stdout.columns || 80, rows: stdout.rows || 24 });
  let done!: (code: number) => void;
  const finished = new Promise<number>((r) => (done = r));
  stdin.setRawMode(true);
  let session: PtySession;
  try {
    session = await connect(size(), { onData: (b) => stdout.write(b), onExit: (code) => done(code ?? 0), onClose: () => done(EXIT.CONNECTION) });
  } catch (err) {
    stdin.setRawMode(false);
    throw err;
  }
  session.resize(size()); // a re-attached session may still have another client's size
  onConnected?.(session);

  let detached = false;
  let prefix = false;
  const onInput = (chunk: Buffer) => {
    const out: number[] = [];
    for (const byte of chunk) {
      if (prefix) {
        prefix = false;
        if (byte === 0x64 /* d */ || byte === 0x04 /* Ctrl-D */) {
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
  process.on("SIGWINCH", onResize);
  const code = await finished;
  stdin.off("data", onInput);
  stdout.off("resize", onResize);
  process.off("SIGWINCH", onResize);
  stdin.setRawMode(false);
  stdin.pause();
  return { code, detached, session };
}

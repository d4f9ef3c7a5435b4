import type { Command } from "commander";
import type { PtySession } from "@capsule/sdk";
import { action, client, examples, EXIT } from "../api.js";

const DETACH_PREFIX = 0x1d; // Ctrl-]

export function registerVmShell(vm: Command): void {
  vm.command("shell <vm>")
    .description("an interactive terminal in a VM (detach with Ctrl-] d; re-attach with --session)")
    .option("--user <name>", "log in as this Linux user (default root)")
    .option("--session <id>", "re-attach to this terminal session instead of opening a new one")
    .option("--exec <command>", "run this command instead of the login shell")
    .addHelpText(
      "after",
      `\nKeys: everything goes to the VM (Ctrl-C interrupts the VM's foreground job). Ctrl-] then d
detaches and leaves the session running; Ctrl-] twice sends one Ctrl-]. The window size
follows your terminal.${examples("capsule vm shell VM", "capsule vm shell VM --user claude", "capsule vm shell VM --session pty-3")}`,
    )
    .action(
      action(async function (this: Command, id: string) {
        const o = this.opts<{ user?: string; session?: string; exec?: string }>();
        const stdin = process.stdin;
        const stdout = process.stdout;
        if (!stdin.isTTY) this.error("vm shell needs a terminal on stdin; use `capsule vm exec` for scripts", { exitCode: EXIT.USAGE });
        const base = client(this).vms.ref({ vmId: id });
        const handle = o.user ? base.user({ username: o.user }) : base;
        const size = () => ({ cols: stdout.columns || 80, rows: stdout.rows || 24 });

        let done!: (code: number) => void;
        const finished = new Promise<number>((r) => (done = r));
        const listeners = {
          onData: (b: Uint8Array) => stdout.write(b),
          onExit: (code: number | null) => done(code ?? 0),
          onClose: () => done(EXIT.CONNECTION),
        };
        // Raw mode from the start: keys typed while connecting go to the VM, not the local line editor.
        stdin.setRawMode(true);
        let session: PtySession;
        try {
          session = o.session
            ? await handle.pty.attach({ sessionId: o.session, ...size(), ...listeners })
            : await handle.pty.open({ ...size(), ...(o.exec ? { exec: o.exec } : {}), ...listeners });
        } catch (err) {
          stdin.setRawMode(false);
          throw err;
        }
        if (o.session) session.resize(size());
        process.stderr.write(`[capsule: session ${session.sessionId} on ${id}; detach with Ctrl-] d]\r\n`);

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
        if (detached) {
          const user = o.user ? ` --user ${o.user}` : "";
          process.stderr.write(`\r\n[capsule: detached; session ${session.sessionId} keeps running. Re-attach: capsule vm shell ${id}${user} --session ${session.sessionId}]\r\n`);
        } else if (code === EXIT.CONNECTION && !session.exited) {
          process.stderr.write(`\r\ncapsule: CONNECTION_LOST: lost the terminal connection; re-attach: capsule vm shell ${id} --session ${session.sessionId}\r\n`);
        }
        process.exitCode = code;
      }),
    );
}

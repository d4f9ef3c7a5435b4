import type { Command } from "commander";
import { action, client, examples, EXIT } from "../api.js";
import { attachTerminal } from "../terminal.js";

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
        if (!process.stdin.isTTY) this.error("vm shell needs a terminal on stdin; use `capsule vm exec` for scripts", { exitCode: EXIT.USAGE });
        const base = client(this).vms.ref({ vmId: id });
        const handle = o.user ? base.user({ username: o.user }) : base;
        const { code, detached, session } = await attachTerminal(
          (size, listeners) =>
            o.session ? handle.pty.attach({ sessionId: o.session, ...size, ...listeners }) : handle.pty.open({ ...size, ...(o.exec ? { exec: o.exec } : {}), ...listeners }),
          (s) => process.stderr.write(`[capsule: session ${s.sessionId} on ${id}; detach with Ctrl-] d]\r\n`),
        );
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

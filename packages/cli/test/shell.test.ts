/**
 * `capsule vm shell` inside a real PTY (node-pty): type a command and see its output, resize,
 * Ctrl-C, detach with Ctrl-] d, re-attach by session id. One VM.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import nodePty from "node-pty";
import { Capsule } from "@capsule/sdk";
import { CLI, useServer } from "../test-support/cli.js";

const ESC = String.fromCharCode(0x1b);
const BEL = String.fromCharCode(0x07);
const ANSI = new RegExp(`${ESC}\\[[0-9;?]*[a-zA-Z]|${ESC}\\][^${BEL}]*${BEL}|${ESC}[=>]`, "g");

function terminal(args: string[], env: Record<string, string>) {
  const term = nodePty.spawn(process.execPath, [CLI, ...args], { name: "xterm-256color", cols: 100, rows: 30, env: { ...process.env, ...env } as Record<string, string> });
  let text = "";
  term.onData((d) => (text += d));
  const exited = new Promise<number>((resolve) => term.onExit((e) => resolve(e.exitCode)));
  return {
    term,
    exited,
    get text() {
      return text.replace(ANSI, "");
    },
    async waitFor(re: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = re.exec(this.text);
        if (m) return m;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}; screen:\n${JSON.stringify(this.text.slice(-1500))}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
  };
}

describe("capsule vm shell in a real terminal", () => {
  const t = useServer();

  it("types, resizes, Ctrl-C, detaches and re-attaches", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const env = { CAPSULE_API_URL: t.get().url, CAPSULE_API_KEY: t.get().keyA };
    const api = new Capsule({ apiUrl: t.get().url, apiKey: t.get().keyA });
    const { vm } = await api.vms.create({ idleTimeoutSeconds: null });
    try {
      const a = terminal(["vm", "shell", vm.vmId], env);
      const [, sessionId] = await a.waitFor(/session (\S+) on/);
      assert.ok(sessionId);
      a.term.write("echo typed-$((6*7))\r");
      await a.waitFor(/typed-42/);

      a.term.write("stty size\r");
      await a.waitFor(/30 100/);
      a.term.resize(120, 40); // SIGWINCH → resize frame → TIOCSWINSZ in the VM
      await new Promise((r) => setTimeout(r, 500));
      a.term.write("stty size\r");
      await a.waitFor(/40 120/);

      a.term.write("sleep 100; echo not-interrupted\r");
      await new Promise((r) => setTimeout(r, 700));
      a.term.write("\x03"); // Ctrl-C reaches the VM's foreground job, not the CLI
      a.term.write("echo after-ctrl-c\r");
      await a.waitFor(/[\r\n]after-ctrl-c/);
      assert.doesNotMatch(a.text, /[\r\n]not-interrupted/);
      a.term.write("export MARK=still-here\r");

      a.term.write("\x1dd"); // Ctrl-] d
      assert.equal(await a.exited, 0);
      assert.match(a.text, new RegExp(`--session ${sessionId}`));
      const { sessions } = await vm.pty.list();
      assert.ok(sessions.some((s) => s.sessionId === sessionId && s.running), "the session survives the detach");

      const b = terminal(["vm", "shell", vm.vmId, "--session", sessionId], env);
      await b.waitFor(/after-ctrl-c/); // scrollback
      b.term.write("echo $MARK\r");
      await b.waitFor(/[\r\n]still-here/);
      b.term.write("exit 5\r");
      assert.equal(await b.exited, 5, "the shell's exit status is the CLI's");
    } finally {
      await vm.delete();
    }
  });
});

/**
 * PTY over WebSockets with the official client. Node 20 has no global WebSocket without
 * `--experimental-websocket` (the client needs it): run with that flag or NODE_OPTIONS.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { asUser, client, type Vm } from "../test-support/client.js";
import { useServer } from "../test-support/harness.js";

const ESC = String.fromCharCode(0x1b);
const BEL = String.fromCharCode(0x07);
/** CSI sequences and OSC titles. */
const ANSI = new RegExp(`${ESC}\\[[0-9;?]*[a-zA-Z]|${ESC}\\][^${BEL}]*${BEL}`, "g");

function screen() {
  let text = "";
  return {
    onData: (d: Uint8Array) => (text += Buffer.from(d).toString("utf8")),
    /** The output without terminal escape sequences (bash's bracketed paste, titles, colours). */
    get text() {
      return text.replace(ANSI, "");
    },
    async waitFor(re: RegExp, timeoutMs = 10_000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      while (!re.test(this.text)) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}; screen:\n${JSON.stringify(this.text.slice(-1500))}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}

describe("pty", () => {
  const t = useServer();

  it("open, write, resize, SIGINT, detach, attach with scrollback, list, SIGKILL → exited", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    assert.equal(typeof globalThis.WebSocket, "function", "run node with --experimental-websocket (Node 20)");
    const { vm } = await client(t.get().url, t.get().keyA).vms.create({ idleTimeoutSeconds: null });
    try {
      const s1 = screen();
      let exit1: number | undefined;
      const session = await vm.pty.open({ cols: 100, rows: 30, onData: s1.onData, onExit: (c) => (exit1 = c) });
      assert.ok(session.sessionId);
      session.write("echo h''i\r");
      await s1.waitFor(/[\r\n]hi\r\n/);
      session.write("stty size\r");
      await s1.waitFor(/30 100/);
      session.resize({ cols: 120, rows: 40 });
      await new Promise((r) => setTimeout(r, 200));
      session.write("stty size\r");
      await s1.waitFor(/40 120/);
      session.write("sleep 100\r");
      await new Promise((r) => setTimeout(r, 300));
      session.signal("SIGINT");
      session.write("echo after-int\r");
      await s1.waitFor(/[\r\n]after-int\r\n/);
      session.write("echo 'bytes:\x1e:ok'\r");
      await s1.waitFor(new RegExp(`bytes:${String.fromCharCode(0x1e)}:ok`)); // 0x1E passes through (the seed's sentinel)
      session.detach();
      assert.equal(exit1, undefined, "detach is not an exit");

      const { sessions } = await vm.pty.list();
      const listed = sessions.find((s) => s.sessionId === session.sessionId);
      assert.ok(listed?.running);
      assert.equal(listed.user, "root");

      const s2 = screen();
      let exit2: number | undefined;
      const again = await vm.pty.attach({ sessionId: session.sessionId, onData: s2.onData, onExit: (c) => (exit2 = c), reconnect: false });
      await s2.waitFor(/after-int/); // the scrollback
      again.write("echo live-again\r");
      await s2.waitFor(/[\r\n]live-again\r\n/);
      again.signal("SIGKILL");
      const deadline = Date.now() + 10_000;
      while (exit2 === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(exit2, 137, "SIGKILL ends the session with exited 137");
    } finally {
      await vm.delete();
    }
  });

  it("sessions: per-user, SESSION_USER_MISMATCH, close", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { vm } = await client(t.get().url, t.get().keyA).vms.create({ idleTimeoutSeconds: null });
    try {
      await vm.exec("useradd -m -s /bin/bash claude");
      const claude = asUser(vm, "claude") as Vm;
      const s = screen();
      const session = await claude.pty.open({ onData: s.onData });
      session.write("id -un\r");
      await s.waitFor(/[\r\n]claude\r\n/);
      session.detach();
      const mine = await claude.pty.list();
      assert.deepEqual(mine.sessions.map((x) => x.sessionId), [session.sessionId]);
      assert.equal(mine.sessions[0]?.user, "claude");

      // root may not attach to or close claude's session
      await assert.rejects(vm.pty.attach({ sessionId: session.sessionId, reconnect: false }));
      await assert.rejects(vm.pty.close({ sessionId: session.sessionId }), (e: Error & { body?: { code: string } }) => e.body?.code === "SESSION_USER_MISMATCH");
      await assert.rejects(vm.pty.close({ sessionId: "no-such-session" }), (e: Error & { body?: { code: string } }) => e.body?.code === "SESSION_NOT_FOUND");

      const closed = await claude.pty.close({ sessionId: session.sessionId });
      assert.equal(closed.sessionId, session.sessionId);
      const after = await claude.pty.list();
      assert.ok(!after.sessions.some((x) => x.sessionId === session.sessionId && x.running));
    } finally {
      await vm.delete();
    }
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { PtyAttachment } from "../src/index.js";
import { useEngine } from "../test-support/harness.js";

/** Collects a PTY's output and waits for a pattern in it. */
function screen(a: PtyAttachment) {
  let text = "";
  a.on("data", (b: Buffer) => (text += b.toString("utf8")));
  return {
    get text() {
      return text;
    },
    async waitFor(re: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = text.match(re);
        if (m) return m;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}; screen so far:\n${text.slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}

describe("pty", () => {
  const t = useEngine();

  it("interactive bash: echo, resize, SIGINT, detach and re-attach with scrollback, exit", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const vm = (await engine.createVm()).id;
    const a = await engine.guest.ptyOpen(vm, { cols: 100, rows: 30 });
    const s = screen(a);
    await a.write("echo h''i\r");
    await s.waitFor(/[\r\n]hi\r\n/); // bash may put bracketed-paste escapes before it

    await a.write("stty size\r");
    await s.waitFor(/30 100/);
    a.resize(120, 40);
    await a.write("stty size\r");
    await s.waitFor(/40 120/);

    await a.write("sleep 100; echo after-sleep-$?\r");
    await new Promise((r) => setTimeout(r, 300));
    a.signal("SIGINT"); // gVisor's line discipline does not echo ^C; the shell coming back proves it
    await a.write("echo alive\r");
    await s.waitFor(/[\r\n]alive\r\n/);
    assert.doesNotMatch(s.text, /after-sleep-0/);

    await a.write("echo before-detach\r");
    await s.waitFor(/[\r\n]before-detach\r\n/);
    a.detach();
    await new Promise((r) => a.once("close", r));

    const sessions = await engine.guest.ptyList(vm);
    assert.equal(sessions.length, 1);
    assert.equal(sessions[0]?.running, true);

    const b = await engine.guest.ptyAttach(vm, a.session.sessionId);
    const s2 = screen(b);
    await s2.waitFor(/before-detach/); // replayed scrollback
    const exited = new Promise<number | null>((r) => b.once("exit", r));
    await b.write("exit 7\r");
    assert.equal(await exited, 7);
  });

  it("sets TERM, and refuses another user's session", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const vm = (await engine.createVm()).id;
    await engine.guest.exec(vm, { command: "useradd -m carol" });
    const a = await engine.guest.ptyOpen(vm, { user: "carol" });
    const s = screen(a);
    await a.write("echo $TERM $(id -un)\r");
    await s.waitFor(/xterm-256color carol/);
    await assert.rejects(engine.guest.ptyAttach(vm, a.session.sessionId), (e: Error & { agentCode?: string }) => e.agentCode === "SESSION_USER_MISMATCH");
    const closed = await engine.guest.ptyClose(vm, a.session.sessionId);
    assert.equal(closed.sessionId, a.session.sessionId);
  });
});

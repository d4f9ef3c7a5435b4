/**
 * Memory snapshots and forks through the SDK, on real gVisor sandboxes: an interactive bash's
 * history and a Node REPL's variable, each in a PTY session, survive `vm.snapshot({ memory: true })`
 * and a create from it, and `vm.fork({ memory: true })`; the copy's PTY sessions re-attach by id.
 * `fork({ memory: false })` boots the disk only: no session, no REPL.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Capsule, type PtySession, type Vm } from "@capsule/sdk";
import { VM_NODE } from "@capsule/server/test-support";
import { screen, useServer } from "../test-support/server.js";

/** A numbered line of bash's `history` holding the command typed before the snapshot. */
const HISTORY_LINE = /\n\s*\d+\s+echo hist-\$\(\(6\*7\)\)/;

/** A VM with a login shell that ran one command and a Node REPL holding `secret`, both detached. */
async function withSessions(vm: Vm): Promise<{ shell: string; repl: string }> {
  const sh = screen();
  const shell = await vm.pty.open({ onData: sh.onData });
  shell.write("echo hist-$((6*7))\n");
  await sh.waitFor(/hist-42/);
  const rs = screen();
  const repl = await vm.pty.open({ exec: `${VM_NODE} -i`, onData: rs.onData });
  await rs.waitFor(/> $/m, 30_000);
  repl.write("globalThis.secret = 4000 + 242\n");
  await rs.waitFor(/4242/);
  shell.detach();
  repl.detach();
  return { shell: shell.sessionId, repl: repl.sessionId };
}

/** In `vm`, re-attaches both sessions and checks the shell's history and the REPL's variable. */
async function checkSessions(vm: Vm, ids: { shell: string; repl: string }): Promise<void> {
  const listed = (await vm.pty.list()).sessions.map((s) => s.sessionId).sort();
  assert.deepEqual(listed, [ids.shell, ids.repl].sort(), "the copy lists the source's sessions");
  const attached: PtySession[] = [];
  try {
    const sh = screen();
    attached.push(await vm.pty.attach({ sessionId: ids.shell, onData: sh.onData }));
    attached[0]!.write("history\n");
    await sh.waitFor(HISTORY_LINE);
    const rs = screen();
    attached.push(await vm.pty.attach({ sessionId: ids.repl, onData: rs.onData }));
    attached[1]!.write("secret * 2\n");
    await rs.waitFor(/8484/);
  } finally {
    for (const s of attached) s.detach();
  }
}

describe("memory snapshots through the SDK: PTY sessions", () => {
  const t = useServer();

  it("a bash history and a Node REPL's variable survive snapshot({ memory: true }) and a create; the copy's sessions re-attach", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const capsule = new Capsule({ apiUrl: t.get().url, apiKey: t.get().keyA });
    const { vm } = await capsule.vms.create({ idleTimeoutSeconds: null });
    const made = [vm];
    try {
      const ids = await withSessions(vm);
      const { snapshotId } = await vm.snapshot({ memory: true });
      const info = await capsule.snapshots.get({ snapshotId });
      assert.equal(info.memory, true);
      assert.ok(info.memoryBytes > 0 && info.sizeBytes >= info.memoryBytes);
      const { vm: copy } = await capsule.vms.create({ snapshotId, idleTimeoutSeconds: null });
      made.push(copy);
      await checkSessions(copy, ids);
    } finally {
      for (const v of made) await v.delete().catch(() => undefined);
    }
  });

  it("fork({ memory: true }): the copy's sessions go on; fork({ memory: false }): its disk only, no sessions", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const capsule = new Capsule({ apiUrl: t.get().url, apiKey: t.get().keyA });
    const { vm } = await capsule.vms.create({ idleTimeoutSeconds: null });
    const made = [vm];
    try {
      const ids = await withSessions(vm);
      const live = await vm.fork({ count: 1, memory: true });
      made.push(...live.forks.map((f) => f.vm));
      await checkSessions(live.forks[0]!.vm, ids);
      const disk = await vm.fork({ count: 1, memory: false });
      made.push(...disk.forks.map((f) => f.vm));
      assert.deepEqual((await disk.forks[0]!.vm.pty.list()).sessions, [], "a disk fork starts afresh");
    } finally {
      for (const v of made) await v.delete().catch(() => undefined);
    }
  });
});

/**
 * `/v5` PTY sessions and pause through the official `freestyle@0.2.17` client, on real
 * sandboxes: open, write, resize, detach and attach by number and by slug (get-or-create),
 * signals in either case, an unknown signal as an `error` frame, replaceOnExit, list and close;
 * `pause` then `start` keeps a shell counter's memory, also across a server restart, after which
 * the paused VM still counts against the account's running-VM quota.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { PtySession } from "freestyle";
import { createKey, destroyDataDir, scratchDir, spawnServer, useServer } from "@capsule/server/test-support";
import { client, exitPromise, NOTHING, rejectsApi, terminal, within } from "../test-support/v5.js";

/** A counter that lives only in the shell's memory, written out (atomically) every 50 ms. */
const COUNTER = "nohup sh -c 'i=0; while true; do i=$((i+1)); echo $i > /root/count.new; mv /root/count.new /root/count; sleep 0.05; done' >/dev/null 2>&1 &";

/** `fn` with one environment variable set (for a child it spawns), restored after. */
async function withEnv<T>(name: string, value: string, fn: () => Promise<T>): Promise<T> {
  const before = process.env[name];
  process.env[name] = value;
  try {
    return await fn();
  } finally {
    if (before === undefined) delete process.env[name];
    else process.env[name] = before;
  }
}

describe("official client 0.2.17: /v5 PTY and pause", () => {
  const t = useServer();

  it("PTY: open, write, resize, detach, attach by id and slug, sigkill/SIGKILL, error frames, replaceOnExit, list, close", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, keyB } = t.get();
    const { vm, vmId } = await client(url, keyA).vms.create({ firewall: NOTHING });

    const first = terminal();
    const firstExit = exitPromise();
    const s: PtySession = await vm.pty.open({ cols: 100, rows: 30, onData: first.onData, onExit: firstExit.onExit });
    assert.equal(typeof s.sessionId, "number");
    assert.ok(s.sessionId >= 1);
    assert.equal(s.created, true);
    s.write("echo hel''lo-$((6*7))\n");
    await first.waitFor(/hello-42/);
    s.resize({ cols: 120, rows: 40 });
    s.write("stty size\n");
    await first.waitFor(/40 120/);
    s.detach();

    const listed = await vm.pty.list();
    const mine = listed.sessions.find((x) => x.sessionId === s.sessionId);
    assert.equal(mine?.state, "running", "a detached session runs on");
    assert.equal(mine?.linuxUser, "root");
    assert.deepEqual([mine?.cols, mine?.rows], [120, 40]);

    const again = terminal();
    const againExit = exitPromise();
    const att = await vm.pty.attach({ session: s.sessionId, onData: again.onData, onExit: againExit.onExit });
    await again.waitFor(/hello-42/); // the scrollback
    assert.equal(att.sessionId, s.sessionId);
    att.write("echo back-$((2+3))\n");
    await again.waitFor(/back-5/);
    att.signal("sigkill");
    assert.equal(await within(againExit.exited, 10_000, "exited after sigkill"), 137);

    // Slugs: get-or-create, attach by name, upper-case signal names, an unknown one answered.
    const named = await vm.pty.open({ exec: "sleep 600", slug: "main" });
    assert.equal(named.created, true);
    assert.equal(named.slug, "main");
    const same = await vm.pty.open({ exec: "echo never-run", slug: "main" });
    assert.deepEqual([same.created, same.sessionId], [false, named.sessionId]);
    same.detach();
    named.detach();
    const errors: string[] = [];
    const byName = exitPromise();
    const bySlug = await vm.pty.attach({ session: "main", onExit: byName.onExit, onError: (e: unknown) => errors.push((e as Error).message) });
    await within(
      (async () => {
        while (bySlug.sessionId !== named.sessionId) await sleep(20); // -1 until sessionInfo
      })(),
      5_000,
      "sessionInfo on attach by slug",
    );
    (bySlug.signal as (s: string) => void)("sigfoo");
    await within(
      (async () => {
        while (errors.length === 0) await sleep(20);
      })(),
      5_000,
      "an error frame for an unknown signal",
    );
    assert.match(errors[0] ?? "", /unknown signal "sigfoo"/);
    (bySlug.signal as (s: string) => void)("SIGKILL");
    assert.equal(await within(byName.exited, 10_000, "exited after SIGKILL"), 137);

    // replaceOnExit: the shell comes back in place (same number, scrollback kept).
    const respawn = terminal();
    const r = await vm.pty.open({ replaceOnExit: true, onData: respawn.onData });
    r.write("echo before-exit\n");
    await respawn.waitFor(/before-exit/);
    await sleep(1_100); // ran long enough not to count as dying at startup
    r.write("exit\n");
    await sleep(500);
    r.write("echo after-$((40+2))\n");
    await respawn.waitFor(/after-42/);
    const row = (await vm.pty.list()).sessions.find((x) => x.sessionId === r.sessionId);
    assert.equal(row?.state, "running");
    r.detach();
    const closed = await vm.pty.close(r.sessionId);
    assert.equal(closed.sessionId, r.sessionId);
    assert.equal((await vm.pty.list()).sessions.find((x) => x.sessionId === r.sessionId)?.state, "exited");

    // Refusals: an unknown session, another account's VM.
    await assert.rejects(vm.pty.attach({ session: 999 }), /Unexpected server response: 404/);
    await assert.rejects(client(url, keyB).vms.ref(vmId).pty.open({}), /Unexpected server response: 404/);
    await vm.delete();
  });

  it("pause keeps memory: a shell counter goes on from where it was after start", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, dataDir } = t.get();
    const { vm, vmId } = await client(url, keyA).vms.create({ firewall: NOTHING });
    await vm.exec(COUNTER);
    await sleep(600);
    const paused = await vm.pause();
    assert.equal(paused.state, "paused");
    assert.equal((await vm.data()).state, "paused");
    assert.equal((await vm.pause()).state, "paused", "pausing a paused VM leaves it so");
    assert.equal((await vm.update({ displayName: "while-paused" })).state, "paused", "a PATCH answers the VM as it is");
    const onHost = path.join(dataDir, "vms", vmId, "disk", "upper", "root", "count");
    const atPause = Number((await fs.readFile(onHost, "utf8")).trim());
    assert.ok(atPause > 3, `the counter ran (${atPause})`);
    await sleep(500);
    assert.equal(Number((await fs.readFile(onHost, "utf8")).trim()), atPause, "nothing runs while paused");

    assert.equal((await vm.start()).state, "running");
    await sleep(300);
    const after = Number((await vm.fs.readTextFile("/root/count")).trim());
    assert.ok(after > atPause && after < atPause + 20, `counting on from ${atPause}, not from 0: ${after}`);

    // A call that needs the guest resumes a paused VM too.
    await vm.pause();
    assert.equal((await vm.exec("echo awake")).stdout, "awake\n");
    assert.equal((await vm.data()).state, "running");
    await vm.delete();
  });

  it("a paused VM survives a server restart, stays paused, counts against the running-VM quota, and start resumes it", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const dataDir = await scratchDir();
    const key = createKey(dataDir, "carol");
    let served = await spawnServer(dataDir);
    try {
      const carol = () => client(served.url, key);
      const { vm, vmId } = await carol().vms.create({ firewall: NOTHING });
      await vm.exec(COUNTER);
      await sleep(600);
      await vm.pause();
      const onHost = path.join(dataDir, "vms", vmId, "disk", "upper", "root", "count");
      const atPause = Number((await fs.readFile(onHost, "utf8")).trim());

      served.child.kill("SIGTERM");
      await new Promise((resolve) => served.child.once("exit", resolve));
      // The new server allows one running VM per account (capsule serve reads CAPSULE_QUOTAS).
      served = await withEnv("CAPSULE_QUOTAS", JSON.stringify({ runningVms: 1 }), () => spawnServer(dataDir));
      const vm2 = carol().vms.ref(vmId);
      assert.equal((await vm2.data()).state, "paused", "still paused after the restart");
      assert.equal(Number((await fs.readFile(onHost, "utf8")).trim()), atPause);
      const full = await rejectsApi(carol().vms.create({ firewall: NOTHING }), 403, "VM_LIMIT_EXCEEDED");
      assert.match(full.message, /at most 1 running VMs, you have 1/, "the paused VM counts as running");
      assert.equal((await vm2.start()).state, "running");
      await sleep(300);
      const after = Number((await vm2.fs.readTextFile("/root/count")).trim());
      assert.ok(after > atPause && after < atPause + 20, `counting on from ${atPause}: ${after}`);
    } finally {
      served.child.kill("SIGTERM");
      await new Promise((resolve) => served.child.once("exit", resolve));
      await destroyDataDir(dataDir);
    }
  });
});

/**
 * The seed guide's ("How to Run Claude Code in a Sandbox") non-Claude steps with the SDK: its
 * code with only the import line changed. The harness VMs have no egress, so a small script
 * stands in for the Claude Code installer's binary at /root/.local/bin/claude.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { freestyle } from "@capsule/sdk";
import { CapsuleError, FileNotFoundError, VmNotFoundError, type Vm } from "@capsule/sdk";
import { screen, until, useServer } from "../test-support/server.js";

const FAKE_CLAUDE = `#!/bin/sh
case "$1" in
  --version) echo "2.1.165 (Claude Code)";;
  -p) echo "haiku from $(id -un) in $(pwd) home=$HOME: $2";;
  *) echo "claude tui as $(id -un) TERM=$TERM"; exec cat;;
esac
`;

describe("seed walk-through with @capsule/sdk", () => {
  const t = useServer();

  it("create, exec, files, user exec, snapshot, create from snapshot, PTY, delete", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    // The default instance reads these on first use (the seed sets FREESTYLE_API_KEY the same way).
    process.env.CAPSULE_API_URL = t.get().url;
    process.env.CAPSULE_API_KEY = t.get().keyA;
    const made: Vm[] = [];
    const snaps: string[] = [];
    try {
      // ---- Build a snapshot (seed lines 40–56)
      const { vm: builder } = await freestyle.vms.create();
      made.push(builder);

      // Stand-in for `curl -fsSL https://claude.ai/install.sh | bash` (no egress in tests).
      await builder.fs.writeTextFile("/root/.local/bin/claude", FAKE_CLAUDE);
      const install = await builder.exec("export HOME=/root && chmod 755 /root/.local/bin/claude && test -n \"$HOME\"");
      console.log(install.statusCode); // 0
      assert.equal(install.statusCode, 0);

      const version = await builder.exec("/root/.local/bin/claude --version");
      console.log(version.stdout?.trim()); // e.g. "2.1.165 (Claude Code)"
      assert.equal(version.stdout?.trim(), "2.1.165 (Claude Code)");

      // ---- Pre-seed ~/.claude.json (seed lines 155–173)
      await builder.fs.writeTextFile(
        "/root/.claude.json",
        JSON.stringify({
          theme: "dark",
          hasCompletedOnboarding: true,
          customApiKeyResponses: { approved: ["sk-ant-test-key-123456789".slice(-20)], rejected: [] },
          projects: { "/root": { hasTrustDialogAccepted: true } },
        }),
      );
      await builder.fs.mkdir("/root/.claude", true);
      await builder.fs.writeTextFile("/root/.claude/credentials.json", "{}");

      // ---- Headless user setup (seed lines 96–103)
      const setup = await builder.exec(`useradd -m -s /bin/bash claude
install -m 755 /root/.local/bin/claude /usr/local/bin/claude
cp -a /root/.claude /root/.claude.json /home/claude/
chown -R claude:claude /home/claude /srv/app`);
      assert.equal(setup.statusCode, 0, setup.stderr ?? "");

      const { snapshotId } = await builder.snapshot();
      snaps.push(snapshotId);
      assert.ok(snapshotId);
      await builder.delete();
      made.shift();

      // ---- One-off prompt (seed lines 76–86)
      const { vm, vmId } = await freestyle.vms.create({ snapshotId, idleTimeoutSeconds: null });
      made.push(vm);
      assert.equal(vm.vmId, vmId);
      const run = await vm.exec({
        command: `HOME=/root ANTHROPIC_API_KEY="${process.env.ANTHROPIC_API_KEY ?? "sk-test"}" ` + `/root/.local/bin/claude -p "Write a haiku about sandboxes"`,
        timeoutMs: 120_000,
      });
      console.log(run.stdout);
      assert.match(run.stdout ?? "", /haiku from root in \/\S* home=\/root: Write a haiku about sandboxes/);

      // ---- Autonomous task as a user (seed lines 109–118)
      const userRun = await vm.user({ username: "claude" }).exec({
        command: `cd /srv/app && HOME=/home/claude TERM=xterm-256color ` + `claude -p "Turn this Vite app into a cookie-clicker game" --dangerously-skip-permissions`,
        timeoutMs: 600_000,
      });
      console.log(userRun.statusCode); // 0
      assert.equal(userRun.statusCode, 0);
      assert.match(userRun.stdout ?? "", /haiku from claude in \/srv\/app home=\/home\/claude/);

      // The snapshot kept the files; user-scoped file calls run as the user.
      const cfg = JSON.parse(await vm.fs.readTextFile("/home/claude/.claude.json")) as { theme: string };
      assert.equal(cfg.theme, "dark");
      const claudeVm = vm.user({ username: "claude" });
      await claudeVm.fs.writeTextFile("/srv/app/index.html", "<h1>cookies</h1>");
      assert.equal((await claudeVm.fs.stat("/srv/app/index.html")).owner, "claude");
      assert.ok((await vm.fs.readDir("/srv/app")).some((e) => e.name === "index.html" && e.kind === "file"));
      assert.equal(await vm.fs.exists("/srv/app/index.html"), true);
      await claudeVm.fs.remove("/srv/app/index.html");
      assert.equal(await vm.fs.exists("/srv/app/index.html"), false);
      await assert.rejects(claudeVm.fs.readTextFile("/root/.claude.json"), (e: CapsuleError) => e.code !== undefined && e instanceof CapsuleError);
      await assert.rejects(vm.fs.readFile("/nope"), FileNotFoundError);

      // ---- Interactive PTY (seed lines 127–150)
      let exitCode: number | null | undefined;
      const out = screen();
      const session = await vm.pty.open({
        cols: 100,
        rows: 30,
        onData: (bytes) => out.onData(bytes), // raw terminal output
        onExit: (code) => {
          exitCode = code;
        },
      });
      session.write(`HOME=/root PATH=/root/.local/bin:$PATH TERM=xterm-256color ` + `ANTHROPIC_API_KEY="sk-test" claude\n`);
      await out.waitFor(/claude tui as root TERM=xterm-256color/);
      session.write("typed-into-the-tui\n");
      await out.waitFor(/typed-into-the-tui[\s\S]*typed-into-the-tui/); // echo + cat's copy
      session.signal("SIGINT"); // ends `cat`, back to the shell
      session.resize({ cols: 120, rows: 40 });
      await new Promise((r) => setTimeout(r, 200));
      session.write("stty size\n");
      await out.waitFor(/40 120/);
      session.detach(); // the session keeps running
      assert.throws(() => session.write("x"), CapsuleError);
      assert.equal(exitCode, undefined);

      const { sessions } = await vm.pty.list();
      assert.ok(sessions.some((s) => s.sessionId === session.sessionId && s.running));

      const again = screen();
      const attached = await vm.pty.attach({ sessionId: session.sessionId, onData: again.onData, onExit: (c) => (exitCode = c) });
      await again.waitFor(/40 120/); // scrollback first
      attached.write("echo reattached-$((6*7))\n");
      await again.waitFor(/reattached-42/);
      attached.signal("SIGKILL");
      await until(() => exitCode !== undefined, 10_000, "onExit after SIGKILL");
      assert.equal(exitCode, 137);

      // ---- Fork, lifecycle and typed errors
      const { forks } = await vm.fork();
      const fork = forks[0]?.vm;
      assert.ok(fork);
      made.push(fork);
      assert.equal((await fork.exec("cat /home/claude/.claude.json | head -c 8")).stdout, '{"theme"');
      await fork.stop();
      assert.equal((await fork.getInfo()).state, "stopped");
      await fork.start();
      assert.equal((await fork.exec("echo up")).stdout, "up\n");
      await assert.rejects(freestyle.vms.ref({ vmId: "no-such-vm" }).exec("true"), (e: unknown) => e instanceof VmNotFoundError && e.code === "VM_NOT_FOUND" && /capsule vm list/.test(e.message));

      const listed = await freestyle.vms.list();
      assert.ok(listed.vms.some((v) => v.id === vm.vmId));
      assert.ok((await freestyle.snapshots.list()).snapshots.some((s) => s.snapshotId === snapshotId));
    } finally {
      for (const v of made) await v.delete().catch(() => undefined);
      for (const s of snaps) await freestyle.snapshots.delete({ snapshotId: s }).catch(() => undefined);
    }
  });
});

/**
 * Claude Code in Capsule, with the REAL Claude Code binary (npm @anthropic-ai/claude-code-linux-x64,
 * fetched once into the host cache) inside real VMs, talking to a scripted Messages API on the
 * host (an allowed host port, `host.capsule.internal`). One snapshot build for the whole file,
 * one main VM, one VM booted from a re-snapshot. Nothing reaches the internet (egress none).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import xtermHeadless from "@xterm/headless";
import { query } from "@anthropic-ai/claude-agent-sdk";
import { buildClaudeSnapshot, Capsule, claudeCodeSpawner, type ClaudeSnapshot, type Vm } from "@capsule/sdk";
import { execFile, spawn as spawnChild } from "node:child_process";
import { CLI } from "@capsule/server/test-support";
import { shellJoin } from "@capsule/contract/shell";
import { startFakeAnthropic, type FakeAnthropic } from "../test-support/fake-anthropic.js";
import { spawnInVm } from "../test-support/seed-bridge.js";
import { until, useServer } from "../test-support/server.js";

const { Terminal } = xtermHeadless;

/** A 100x30 headless xterm and its screen as text, one line per row (what a user sees). */
function headlessTerminal(): { term: InstanceType<typeof Terminal>; text: () => string } {
  const term = new Terminal({ cols: 100, rows: 30, allowProposedApi: true });
  const text = () => {
    const b = term.buffer.active;
    const lines: string[] = [];
    for (let i = 0; i < b.length; i++) lines.push(b.getLine(i)?.translateToString(true) ?? "");
    return lines.join("\n");
  };
  return { term, text };
}

/** Runs the real `capsule` binary; stdin is closed. */
function capsuleCli(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, timeout: 180_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr });
    });
    child.stdin?.end();
  });
}
const KEY = "sk-ant-capsule-test-0123456789abcdefghijKLMNOPQRST";
const HAIKU = "Sandboxed thoughts drift / gVisor holds the kernel / claude answers here";

describe("Claude Code in Capsule (real binary, real VMs)", () => {
  let fake: FakeAnthropic | undefined;
  before(async () => {
    fake = await startFakeAnthropic([
      { match: /haiku about sandboxes/, steps: [{ text: HAIKU }] },
      {
        match: /cookie-clicker/,
        steps: [
          { tool: "Write", input: { file_path: "/srv/app/index.html", content: "<h1>Cookie clicker</h1>\n" } },
          { tool: "Bash", input: { command: "echo built > /srv/app/build.txt", description: "Build the game" } },
          { text: "The cookie-clicker game is ready." },
        ],
      },
      { match: /interactive hello/, steps: [{ text: "INTERACTIVE-ANSWER-42" }] },
      { match: /hello from the copy/, latest: true, steps: [{ text: "FORKED-ANSWER-7" }] },
      { match: /hello from the source/, latest: true, steps: [{ text: "SOURCE-ANSWER-5" }] },
      { match: /hello before the fork/, steps: [{ text: "BEFORE-FORK-ANSWER-3" }] },
      {
        match: /agent sdk task/,
        steps: [
          { tool: "Write", input: { file_path: "/srv/app/agent.txt", content: "draft\n" } },
          { tool: "Edit", input: { file_path: "/srv/app/agent.txt", old_string: "draft", new_string: "edited by the agent sdk" } },
          { text: "SDK-DONE" },
        ],
      },
    ]);
  });
  after(async () => {
    await fake?.close();
  });
  const t = useServer({ allowedHostPorts: () => [fake!.port] });
  let capsule: Capsule;
  let snap: ClaudeSnapshot | undefined;
  let vm: Vm | undefined;
  const env = () => `ANTHROPIC_BASE_URL=${fake!.vmBaseUrl} CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL=1`;

  before(async () => {
    if (t.skip()) return;
    capsule = new Capsule({ apiUrl: t.get().url, apiKey: t.get().keyA });
    const t0 = Date.now();
    snap = await buildClaudeSnapshot(capsule, { apiKey: KEY });
    console.log(`# claude snapshot built in ${Date.now() - t0} ms (${snap.name})`);
    const t1 = Date.now();
    vm = (await capsule.vms.create({ snapshotId: snap.snapshotId, idleTimeoutSeconds: null })).vm;
    console.log(`# VM from the claude snapshot in ${Date.now() - t1} ms`);
  });

  const skip = () => t.skip() || (!vm ? "no VM" : false);

  it("is cached by version: the second build returns the same snapshot at once", async (ctx) => {
    if (skip()) return ctx.skip(String(skip()));
    const t0 = Date.now();
    const again = await buildClaudeSnapshot(capsule, { apiKey: KEY });
    assert.equal(again.snapshotId, snap!.snapshotId);
    assert.equal(again.cached, true);
    assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
  });

  it("one-off: claude -p as root (the seed's vm.exec shape) returns the scripted text", async (ctx) => {
    if (skip()) return ctx.skip(String(skip()));
    const t0 = Date.now();
    const run = await vm!.exec({
      command: `HOME=/root ANTHROPIC_API_KEY="${KEY}" ${env()} /root/.local/bin/claude -p "Write a haiku about sandboxes"`,
      timeoutMs: 120_000,
    });
    console.log(`# claude -p round trip in the VM: ${Date.now() - t0} ms`);
    assert.equal(run.statusCode, 0, run.stderr ?? "");
    assert.equal(run.stdout?.trim(), HAIKU);
    const turn = fake!.turns().at(-1);
    assert.equal(turn?.headers["x-api-key"], KEY);
    assert.match(String(turn?.headers["user-agent"]), /claude-cli\//);
    assert.equal((await vm!.exec("/usr/local/bin/claude --version")).stdout?.trim().split(" ")[0], snap!.version);
  });

  it("autonomous: as user claude in /srv/app with --dangerously-skip-permissions, Write and Bash edits land; root is refused", async (ctx) => {
    if (skip()) return ctx.skip(String(skip()));
    const command =
      `cd /srv/app && HOME=/home/claude TERM=xterm-256color ANTHROPIC_API_KEY="${KEY}" ${env()} ` +
      `claude -p "Turn this Vite app into a cookie-clicker game" --dangerously-skip-permissions`;
    const run = await vm!.user({ username: "claude" }).exec({ command, timeoutMs: 180_000 });
    assert.equal(run.statusCode, 0, `${run.stderr ?? ""}${run.stdout ?? ""}`);
    assert.match(run.stdout ?? "", /cookie-clicker game is ready/);
    const owners = await vm!.exec("stat -c '%U %n' /srv/app/index.html /srv/app/build.txt && cat /srv/app/index.html /srv/app/build.txt");
    assert.equal(owners.stdout, "claude /srv/app/index.html\nclaude /srv/app/build.txt\n<h1>Cookie clicker</h1>\nbuilt\n");

    const asRoot = await vm!.exec({ command: command.replace("HOME=/home/claude", "HOME=/root"), timeoutMs: 120_000 });
    assert.notEqual(asRoot.statusCode, 0);
    assert.match(`${asRoot.stderr ?? ""}${asRoot.stdout ?? ""}`, /root\/sudo privileges/);
  });

  it("interactive: over the PTY (TERM set by Capsule) the UI renders its prompt box and answers a typed prompt", async (ctx) => {
    if (skip()) return ctx.skip(String(skip()));
    const { term, text: screenText } = headlessTerminal();
    let exited: number | null | undefined;
    const session = await vm!.pty.open({ cols: 100, rows: 30, onData: (d) => term.write(d), onExit: (c) => (exited = c) });
    try {
      session.write(`echo "TERM is $TERM"\n`);
      await until(() => /TERM is xterm-256color/.test(screenText()), 20_000, "TERM=xterm-256color in the PTY shell");
      session.write(`cd /root && HOME=/root ANTHROPIC_API_KEY="${KEY}" ${env()} claude\n`);
      try {
        // The prompt box: a ❯ input line between two horizontal rules.
        await until(() => /─{20}[^\n]*\n❯[^\n]*\n─{20}/.test(screenText()) && screenText().includes("Claude Code v"), 60_000, "the prompt box");
      } catch (err) {
        throw new Error(`${(err as Error).message}; screen:\n${screenText()}`);
      }
      session.write("Say an interactive hello");
      await new Promise((r) => setTimeout(r, 500));
      session.write("\r");
      try {
        await until(() => screenText().includes("INTERACTIVE-ANSWER-42"), 60_000, "the scripted answer on screen");
      } catch (err) {
        throw new Error(`${(err as Error).message}; screen:\n${screenText()}`);
      }
      session.write("/exit");
      await new Promise((r) => setTimeout(r, 500));
      session.write("\r");
      await until(() => /\$ $|# $/m.test(screenText().trimEnd() + " "), 20_000, "the shell prompt after /exit").catch(() => undefined);
    } finally {
      session.signal("SIGKILL");
      session.detach();
      term.dispose();
    }
    assert.equal(exited === undefined || exited !== null, true);
  });

  it("memory fork mid-session: Claude Code in a PTY answered a prompt; the copy re-attaches the session and it goes on with the next", async (ctx) => {
    if (skip()) return ctx.skip(String(skip()));
    const typed = async (session: { write(s: string): void }, line: string) => {
      session.write(line);
      await new Promise((r) => setTimeout(r, 500));
      session.write("\r");
    };
    const src = headlessTerminal();
    const session = await vm!.pty.open({ cols: 100, rows: 30, onData: (d) => src.term.write(d) });
    let copy: Vm | undefined;
    try {
      session.write(`cd /root && HOME=/root ANTHROPIC_API_KEY="${KEY}" ${env()} claude\n`);
      const onScreen = async (screen: { text(): string }, what: RegExp | string, label: string) =>
        until(() => (typeof what === "string" ? screen.text().includes(what) : what.test(screen.text())), 60_000, label).catch((err: Error) => {
          throw new Error(`${err.message}; screen:\n${screen.text()}`);
        });
      await onScreen(src, /─{20}[^\n]*\n❯[^\n]*\n─{20}/, "the prompt box");
      await typed(session, "Say hello before the fork");
      await onScreen(src, "BEFORE-FORK-ANSWER-3", "the answer before the fork");
      session.detach();

      const { forks } = await vm!.fork({ count: 1, memory: true });
      copy = forks[0]!.vm;
      // The source goes on too.
      const back = headlessTerminal();
      const mine = await vm!.pty.attach({ sessionId: session.sessionId, onData: (d) => back.term.write(d) });
      try {
        await typed(mine, "And say hello from the source");
        await onScreen(back, "SOURCE-ANSWER-5", "the source's answer after the fork");
      } finally {
        mine.detach();
        back.term.dispose();
      }
      const dst = headlessTerminal();
      const again = await copy.pty.attach({ sessionId: session.sessionId, onData: (d) => dst.term.write(d) });
      try {
        await typed(again, "Now say hello from the copy");
        await onScreen(dst, "FORKED-ANSWER-7", "the copy's answer to the next prompt");
        // The copy's Claude Code went on with the source's conversation: its request carried the first exchange.
        const turn = fake!.turns().findLast((r) => JSON.stringify(r.body).includes("hello from the copy"));
        assert.ok(turn, "the copy's Claude Code asked the Messages API");
        assert.match(JSON.stringify(turn.body), /hello before the fork[\s\S]*BEFORE-FORK-ANSWER-3/);
        assert.equal((await copy.exec("hostname")).stdout?.trim(), copy.id);
      } finally {
        again.signal("SIGKILL");
        again.detach();
        dst.term.dispose();
      }
    } finally {
      await copy?.delete().catch(() => undefined);
      await vm!.pty.close({ sessionId: session.sessionId }).catch(() => undefined);
      src.term.dispose();
    }
  });

  it("Agent SDK: query() with claudeCodeSpawner ends with a result, and the scripted Write + Edit happened in the VM", async (ctx) => {
    if (skip()) return ctx.skip(String(skip()));
    const stderr: Buffer[] = [];
    const t0 = Date.now();
    const response = query({
      prompt: "Run the agent sdk task",
      options: {
        spawnClaudeCodeProcess: claudeCodeSpawner(vm!, { user: "claude", cwd: "/srv/app", stderr: (c) => stderr.push(c) }),
        pathToClaudeCodeExecutable: "/usr/local/bin/claude",
        env: { ANTHROPIC_API_KEY: KEY, ANTHROPIC_BASE_URL: fake!.vmBaseUrl, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1", SECRET_NOT_FORWARDED: "x" },
        permissionMode: "bypassPermissions",
        allowDangerouslySkipPermissions: true,
      },
    });
    let result: { type: string; subtype?: string; result?: string } | undefined;
    for await (const message of response) {
      if (message.type === "result") {
        result = message as typeof result;
        break;
      }
    }
    console.log(`# Agent SDK query() to result through vm.spawn: ${Date.now() - t0} ms`);
    assert.ok(result, `no result; stderr: ${Buffer.concat(stderr).toString()}`);
    assert.equal(result.subtype, "success", JSON.stringify(result));
    assert.equal(result.result, "SDK-DONE");
    const file = await vm!.exec("stat -c %U /srv/app/agent.txt && cat /srv/app/agent.txt");
    assert.equal(file.stdout, "claude\nedited by the agent sdk\n");
  });

  it("Agent SDK: query() through the seed's own PTY bridge (spawnInVm, unchanged) ends with a result, and the scripted Write happened", async (ctx) => {
    if (skip()) return ctx.skip(String(skip()));
    // The seed's bridge forwards only ANTHROPIC_API_KEY and the SDK's markers, so the scripted
    // API's address comes from Claude Code's own settings (`env`), as a user's gateway would.
    await vm!.fs.writeTextFile(
      "/root/.claude/settings.json",
      JSON.stringify({ skipDangerousModePermissionPrompt: true, env: { ANTHROPIC_BASE_URL: fake!.vmBaseUrl, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1" } }),
    );
    fake!.script({ match: /seed bridge task/, steps: [{ tool: "Write", input: { file_path: "/root/bridge.txt", content: "via the seed bridge\n" } }, { text: "BRIDGE-DONE" }] });
    // The seed's own options, verbatim but for the key.
    const response = query({
      prompt: "Run the seed bridge task",
      options: {
        spawnClaudeCodeProcess: spawnInVm(vm!),
        pathToClaudeCodeExecutable: "/root/.local/bin/claude",
        env: { ...process.env, ANTHROPIC_API_KEY: KEY, HOME: "/root", PATH: "/root/.local/bin:/usr/bin:/bin" },
        canUseTool: async (_tool, input) => ({ behavior: "allow", updatedInput: input }),
      },
    });
    let result: { type: string; subtype?: string; result?: string } | undefined;
    for await (const message of response) {
      if (message.type === "result") {
        result = message as typeof result;
        break; // one-shot: the bridge tears the CLI down
      }
    }
    assert.equal(result?.subtype, "success", JSON.stringify(result));
    assert.equal(result?.result, "BRIDGE-DONE");
    assert.equal((await vm!.exec("cat /root/bridge.txt")).stdout, "via the seed bridge\n");
  });

  it("claudeCodeSpawner: real pipes, stdin EOF, exit code, env filtering, abort and kill", async (ctx) => {
    if (skip()) return ctx.skip(String(skip()));
    const spawn = claudeCodeSpawner(vm!, { user: "claude", cwd: "/srv/app", executable: "sh" });
    const ac = new AbortController();
    const collect = (p: { stdout: NodeJS.ReadableStream }) => new Promise<string>((r) => { let s = ""; p.stdout.on("data", (d: Buffer) => (s += d.toString())); p.stdout.on("end", () => r(s)); });
    const onExit = (p: { once: (e: "exit", l: (code: number | null, signal: string | null) => void) => void }) => new Promise<[number | null, string | null]>((r) => p.once("exit", (code, signal) => r([code, signal])));

    const cat = spawn({ command: "/host/path/claude", args: ["-c", "cat; echo \"$HOME $(id -un) $(pwd) ${ANTHROPIC_API_KEY:-} ${CLAUDE_CODE_X:-} ${SECRET:-none}\"; exit 3"], env: { ANTHROPIC_API_KEY: "k1", CLAUDE_CODE_X: "x1", SECRET: "s" }, signal: ac.signal });
    const out = collect(cat);
    const ended = onExit(cat);
    cat.stdin.write("over the pipe\n");
    cat.stdin.end();
    assert.deepEqual(await ended, [3, null]);
    assert.equal(await out, "over the pipe\n/home/claude claude /srv/app k1 x1 none\n");
    assert.equal(cat.exitCode, 3);
    assert.equal(cat.killed, false);

    const sleeper = spawn({ command: "claude", args: ["-c", "exec sleep 100"], env: {}, signal: ac.signal });
    sleeper.stdout.resume();
    const slept = onExit(sleeper);
    await new Promise((r) => setTimeout(r, 500));
    const t0 = Date.now();
    ac.abort();
    const [code, signal] = await slept;
    assert.equal(code, null);
    assert.equal(signal, "SIGTERM");
    assert.equal(sleeper.killed, true);
    assert.ok(Date.now() - t0 < 10_000);

    const k = spawn({ command: "claude", args: ["-c", "exec sleep 100"], env: {}, signal: new AbortController().signal });
    k.stdout.resume();
    const kEnded = onExit(k);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(k.kill("SIGKILL"), true);
    assert.deepEqual(await kEnded, [null, "SIGKILL"]);
  });

  it("a login-like state change in ~/.claude survives a snapshot into new VMs", async (ctx) => {
    if (skip()) return ctx.skip(String(skip()));
    const cred = JSON.stringify({ claudeAiOauth: { accessToken: "fake-token", expiresAt: 4102444800000 } });
    await vm!.fs.writeTextFile("/root/.claude/.credentials.json", cred);
    await vm!.user({ username: "claude" }).exec("mkdir -p ~/.claude && echo logged-in > ~/.claude/login-marker");
    const { snapshotId } = await vm!.snapshot({ name: "claude-logged-in" });
    const { vm: next } = await capsule.vms.create({ snapshotId, idleTimeoutSeconds: null });
    try {
      assert.equal(await next.fs.readTextFile("/root/.claude/.credentials.json"), cred);
      const r = await next.exec("cat /home/claude/.claude/login-marker && stat -c %U /home/claude/.claude/login-marker && claude --version >/dev/null && echo ok");
      assert.equal(r.stdout, "logged-in\nclaude\nok\n");
    } finally {
      await next.delete().catch(() => undefined);
    }
  });

  it("CLI: capsule claude snapshot reuses the snapshot; capsule claude streams a one-off in a fresh VM and an autonomous task in a given VM", async (ctx) => {
    if (skip()) return ctx.skip(String(skip()));
    const cliEnv = {
      CAPSULE_API_URL: t.get().url,
      CAPSULE_API_KEY: t.get().keyA,
      ANTHROPIC_API_KEY: KEY,
      ANTHROPIC_BASE_URL: fake!.vmBaseUrl,
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
    };
    const t0 = Date.now();
    const snapRun = await capsuleCli(["claude", "snapshot", "--approve-key", "--json"], cliEnv);
    assert.equal(snapRun.code, 0, snapRun.stderr);
    assert.deepEqual(JSON.parse(snapRun.stdout), { ...snap, cached: true });
    assert.ok(Date.now() - t0 < 5000);

    const before = (await capsule.vms.list()).vms.length;
    const oneOff = await capsuleCli(["claude", "Write a haiku about sandboxes", "--snapshot", snap!.snapshotId, "--user", "root", "--dir", "/root"], cliEnv);
    assert.equal(oneOff.code, 0, oneOff.stderr);
    assert.equal(oneOff.stdout.trim(), HAIKU);
    assert.match(oneOff.stderr, /Claude Code in VM /);
    assert.equal((await capsule.vms.list()).vms.length, before, "the fresh VM is deleted afterwards");

    const auto = await capsuleCli(["claude", "Make it a cookie-clicker game again", "--vm", vm!.id, "--autonomous"], cliEnv);
    assert.equal(auto.code, 0, auto.stderr);
    assert.match(auto.stdout, /cookie-clicker game is ready/);
    const refused = await capsuleCli(["claude", "Make it a cookie-clicker game again", "--vm", vm!.id, "--autonomous", "--user", "root"], cliEnv);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr + refused.stdout, /root\/sudo privileges/);
  });

  it("CLI: capsule claude --interactive attaches a terminal running Claude Code's UI (under script(1) for a tty)", async (ctx) => {
    if (skip()) return ctx.skip(String(skip()));
    const cmd = shellJoin([process.execPath, CLI, "claude", "--interactive", "--vm", vm!.id, "--user", "root", "--dir", "/root"]);
    const child = spawnChild("script", ["-qfec", `stty cols 100 rows 30; exec ${cmd}`, "/dev/null"], {
      env: { ...process.env, CAPSULE_API_URL: t.get().url, CAPSULE_API_KEY: t.get().keyA, ANTHROPIC_API_KEY: KEY, ANTHROPIC_BASE_URL: fake!.vmBaseUrl, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1", CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL: "1", TERM: "xterm-256color" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    const { term, text: screenText } = headlessTerminal();
    let raw = "";
    child.stdout.on("data", (d: Buffer) => {
      raw += d.toString();
      term.write(d);
    });
    child.stderr.resume();
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    try {
      await until(() => /─{20}[^\n]*\n❯[^\n]*\n─{20}/.test(screenText()), 60_000, "the prompt box").catch((err: Error) => {
        throw new Error(`${err.message}; screen:\n${screenText()}\nraw tail: ${JSON.stringify(raw.slice(-500))}`);
      });
      child.stdin.write("Say an interactive hello from the CLI");
      await new Promise((r) => setTimeout(r, 500));
      child.stdin.write("\r");
      await until(() => screenText().includes("INTERACTIVE-ANSWER-42"), 60_000, "the scripted answer").catch((err: Error) => {
        throw new Error(`${err.message}; screen:\n${screenText()}`);
      });
      child.stdin.write("/exit");
      await new Promise((r) => setTimeout(r, 500));
      child.stdin.write("\r");
      assert.equal(await Promise.race([exited, new Promise((r) => setTimeout(() => r("timeout"), 20_000))]), 0);
    } finally {
      child.kill("SIGKILL");
      term.dispose();
    }
  });
});

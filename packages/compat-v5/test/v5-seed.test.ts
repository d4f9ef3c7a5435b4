/**
 * The seed guide ("How to Run Claude Code in a Sandbox") ported to the official
 * `freestyle@0.2.17` client (`new Freestyle({ baseUrl })`, `/v5`), step by step as a user of that
 * client would write it, on real sandboxes with the REAL Claude Code binary (npm
 * `@anthropic-ai/claude-code-linux-x64`, from the host cache) talking to a scripted Messages API
 * on the host. The VMs' firewall allows that one host port and nothing else.
 *
 * What the port changes, and why (0.2.17's API, not Capsule's choices):
 * - every create names a `firewall`;
 * - without `linuxUser`, exec and the PTY run as the VM's uid-1000 account (here `claude`, made by
 *   the guide's `useradd`), so the guide's root steps say `linuxUser: "root"`;
 * - the environment goes in exec's `env` instead of the command line;
 * - PTY signals are lower case (`"sigkill"`), and `onExit` gets a number;
 * - the installer (`curl … | bash`) becomes a chunked upload of the binary (VMs have no internet
 *   here), with `fs.writeFile` and a `Blob`.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, openAsBlob } from "node:fs";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { query } from "@anthropic-ai/claude-agent-sdk";
import { Freestyle, type FirewallSpec, type Vm } from "freestyle";
import { ensureClaudeCodeBinary, DEFAULT_CLAUDE_CODE_VERSION } from "@capsule/sdk";
import { startFakeAnthropic, type FakeAnthropic } from "@capsule/sdk/fake-anthropic";
import { useServer } from "@capsule/server/test-support";
import { spawnInVm } from "../test-support/spawn-in-vm.js";

const KEY = "sk-ant-capsule-v5-seed-0123456789abcdefghijKLMNOPQRST";
const HAIKU = "Firewalled and small / a v5 sandbox answers / the key stays outside";
const INTERACTIVE = "INTERACTIVE-V5-ANSWER-7";
const BRIDGE_DONE = "V5-BRIDGE-DONE";
/** Claude Code's own traffic off, and no plugin marketplace clone (notes/claude-code.md). */
const OFFLINE = { CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1", CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL: "1" };
/** Claude Code in a gVisor VM answers a scripted prompt in about a second; room for a busy host. */
const CLAUDE_MS = 120_000;

const sha256File = (file: string) =>
  new Promise<string>((resolve, reject) => {
    const h = createHash("sha256");
    createReadStream(file).on("data", (c) => h.update(c)).on("end", () => resolve(h.digest("hex"))).on("error", reject);
  });

/** Terminal output with its escape sequences removed, so a TUI's text can be matched. */
// eslint-disable-next-line no-control-regex -- escape sequences are control characters
const plain = (s: string) => s.replace(/\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>]/g, "");

/** A PTY's output so far, and a wait for a pattern in it. */
function terminal() {
  let text = "";
  return {
    onData: (b: Uint8Array) => void (text += Buffer.from(b).toString("utf8")),
    text: () => text,
    async waitFor(re: RegExp, what: string, ms = 20_000): Promise<void> {
      const deadline = Date.now() + ms;
      while (!re.test(plain(text))) {
        if (Date.now() > deadline) throw new Error(`no ${what} (${re}) within ${ms} ms; output tail: ${JSON.stringify(plain(text).slice(-800))}`);
        await sleep(100);
      }
    },
  };
}

describe("the seed's walk-through on freestyle@0.2.17 (/v5), real Claude Code", () => {
  let fake: FakeAnthropic | undefined;
  let claudeBin = "";
  before(async () => {
    claudeBin = await ensureClaudeCodeBinary();
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
      { match: /interactive hello/, steps: [{ text: INTERACTIVE }] },
      { match: /seed bridge task/, steps: [{ tool: "Write", input: { file_path: "/root/bridge.txt", content: "via the v5 PTY\n" } }, { text: BRIDGE_DONE }] },
    ]);
  });
  after(async () => {
    await fake?.close();
  });
  const t = useServer({ allowedHostPorts: () => [fake!.port] });

  let freestyle: Freestyle;
  /** This VM may reach the scripted Messages API on the host, and nothing else. */
  let firewall: FirewallSpec;
  let snapshotId: string | undefined;
  let vm: Vm | undefined;
  const made: Vm[] = [];
  const snapshots: string[] = [];
  before(() => {
    if (t.skip()) return;
    freestyle = new Freestyle({ baseUrl: t.get().url, apiKey: t.get().keyA });
    firewall = { rules: [{ action: "allow", source: {}, destination: { vmId: "host", protocol: "tcp", port: fake!.port }, description: "the Messages API" }] };
  });
  // Whatever a failed step left; the walk-through's own last step deletes the rest.
  after(async () => {
    for (const v of made) await v.delete().catch(() => undefined);
    for (const id of snapshots) await freestyle?.vms.snapshots.delete(id).catch(() => undefined);
  });
  const skip = () => t.skip() || (!vm ? "no VM from the Claude Code snapshot" : false);

  it("builds a snapshot with Claude Code installed (the binary uploaded in chunks, its sha256 equal in the VM)", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const t0 = Date.now();
    const { vm: builder } = await freestyle.vms.create({ firewall });
    made.push(builder);

    // Stand-in for `curl -fsSL https://claude.ai/install.sh | bash`: the same binary, at the
    // installer's path, through 0.2's resumable upload (a Blob is read one chunk at a time).
    let progress = 0;
    await builder.fs.writeFile("/root/.local/bin/claude", await openAsBlob(claudeBin), { mode: 0o755, onProgress: (p) => (progress = p.completedBytes) });
    const version = await builder.exec({ command: "/root/.local/bin/claude --version", linuxUser: "root", env: { HOME: "/root" } });
    assert.equal(version.statusCode, 0, version.stderr ?? "");
    assert.equal(version.stdout?.trim().split(" ")[0], DEFAULT_CLAUDE_CODE_VERSION);
    const inVm = await builder.exec({ command: "sha256sum /root/.local/bin/claude", linuxUser: "root", timeoutMs: 60_000 });
    assert.equal(inVm.stdout?.split(" ")[0], await sha256File(claudeBin));
    assert.equal(progress, (await openAsBlob(claudeBin)).size);

    // Pre-seed ~/.claude.json (the guide's onboarding section), and point Claude Code at the
    // scripted API in its own settings: the guide's bridge forwards only ANTHROPIC_API_KEY.
    await builder.fs.writeTextFile(
      "/root/.claude.json",
      JSON.stringify({
        theme: "dark",
        hasCompletedOnboarding: true,
        customApiKeyResponses: { approved: [KEY.slice(-20)], rejected: [] },
        projects: { "/root": { hasTrustDialogAccepted: true } },
      }),
    );
    await builder.fs.mkdir("/root/.claude");
    await builder.fs.writeTextFile("/root/.claude/settings.json", JSON.stringify({ env: { ANTHROPIC_BASE_URL: fake!.vmBaseUrl, ...OFFLINE } }));

    // The headless user (the guide's autonomous section), made on the builder.
    const setup = await builder.exec({
      command: `useradd -m -s /bin/bash claude
install -m 755 /root/.local/bin/claude /usr/local/bin/claude
cp -a /root/.claude /root/.claude.json /home/claude/
mkdir -p /srv/app
chown -R claude:claude /home/claude /srv/app`,
      linuxUser: "root",
      timeoutMs: 60_000,
    });
    assert.equal(setup.statusCode, 0, setup.stderr ?? "");

    ({ snapshotId } = await builder.snapshot());
    snapshots.push(snapshotId);
    await builder.delete();
    made.splice(made.indexOf(builder), 1);
    console.log(`# Claude Code snapshot through 0.2.17 in ${Date.now() - t0} ms`);

    // Boot from the snapshot, with a firewall.
    const t1 = Date.now();
    ({ vm } = await freestyle.vms.create({ snapshotId, firewall, idleTimeoutSeconds: null }));
    made.push(vm);
    console.log(`# VM from the snapshot in ${Date.now() - t1} ms`);
    assert.equal((await vm.exec("/usr/local/bin/claude --version")).stdout?.trim().split(" ")[0], DEFAULT_CLAUDE_CODE_VERSION);
    assert.deepEqual((await vm.firewallRules()).rules.map((r) => r.destination), [{ vmId: "host", protocol: "tcp", port: fake!.port }]);
  });

  it("one-off prompt: claude -p as root returns the scripted text", async (ctx) => {
    if (skip()) return ctx.skip(String(skip()));
    const t0 = Date.now();
    const run = await vm!.exec({
      command: `/root/.local/bin/claude -p "Write a haiku about sandboxes"`,
      linuxUser: "root",
      env: { HOME: "/root", ANTHROPIC_API_KEY: KEY },
      timeoutMs: CLAUDE_MS,
    });
    console.log(`# claude -p in the VM: ${Date.now() - t0} ms`);
    assert.equal(run.statusCode, 0, run.stderr ?? "");
    assert.equal(run.stdout?.trim(), HAIKU);
    assert.equal(fake!.turns().at(-1)?.headers["x-api-key"], KEY);
  });

  it("autonomous task as linuxUser claude: the scripted Write and Bash land as claude; as root it is refused", async (ctx) => {
    if (skip()) return ctx.skip(String(skip()));
    // 0.2's default user is the uid-1000 account: the guide's `useradd` made it `claude`.
    assert.equal((await vm!.exec("id -un")).stdout, "claude\n");
    const task = { command: `cd /srv/app && claude -p "Turn this Vite app into a cookie-clicker game" --dangerously-skip-permissions`, timeoutMs: CLAUDE_MS };
    const run = await vm!.linuxUser("claude").exec({ ...task, env: { HOME: "/home/claude", TERM: "xterm-256color", ANTHROPIC_API_KEY: KEY } });
    assert.equal(run.statusCode, 0, `${run.stderr ?? ""}${run.stdout ?? ""}`);
    assert.match(run.stdout ?? "", /cookie-clicker game is ready/);
    const owners = await vm!.exec({ command: "stat -c '%U %n' /srv/app/index.html /srv/app/build.txt && cat /srv/app/build.txt", linuxUser: "root" });
    assert.equal(owners.stdout, "claude /srv/app/index.html\nclaude /srv/app/build.txt\nbuilt\n");

    const asRoot = await vm!.exec({ ...task, linuxUser: "root", env: { HOME: "/root", ANTHROPIC_API_KEY: KEY } });
    assert.notEqual(asRoot.statusCode, 0);
    assert.match(`${asRoot.stderr ?? ""}${asRoot.stdout ?? ""}`, /root\/sudo privileges/);
  });

  it("files round trip: 1 KB of bytes with a mode, dir, exists, stat, remove", async (ctx) => {
    if (skip()) return ctx.skip(String(skip()));
    const bytes = new Uint8Array(randomBytes(1024));
    await vm!.fs.writeFile("/srv/app/blob.bin", bytes, { mode: 0o640 });
    assert.deepEqual(await vm!.fs.readFile("/srv/app/blob.bin"), bytes);
    assert.ok((await vm!.fs.readDir("/srv/app")).some((e) => e.name === "blob.bin"));
    const stat = await vm!.exec({ command: "stat -c '%a %s' /srv/app/blob.bin && sha256sum < /srv/app/blob.bin", linuxUser: "root" });
    assert.equal(stat.stdout, `640 1024\n${createHash("sha256").update(bytes).digest("hex")}  -\n`);
    assert.equal(await vm!.fs.exists("/srv/app/blob.bin"), true);
    await vm!.fs.remove("/srv/app/blob.bin");
    assert.equal(await vm!.fs.exists("/srv/app/blob.bin"), false);
  });

  it("interactive over the PTY: Claude Code's UI answers a typed prompt; resize, detach, attach by id, sigkill", async (ctx) => {
    if (skip()) return ctx.skip(String(skip()));
    // The guide's shell is root's; 0.2 scopes a PTY, and its attach, to one Linux user.
    const root = vm!.linuxUser("root");
    const out = terminal();
    let exited: (code: number) => void = () => undefined;
    const exit = new Promise<number>((resolve) => (exited = resolve));
    const session = await root.pty.open({ cols: 100, rows: 30, onData: out.onData });
    try {
      assert.equal(typeof session.sessionId, "number");
      session.write(`cd /root && HOME=/root PATH=/root/.local/bin:$PATH TERM=xterm-256color ANTHROPIC_API_KEY="${KEY}" claude\n`);
      await out.waitFor(/Claude Code/, "Claude Code's UI", 60_000);
      await sleep(1000); // the UI takes keystrokes once its prompt box is up
      session.write("Say an interactive hello");
      await sleep(500);
      session.write("\r");
      await out.waitFor(new RegExp(INTERACTIVE), "the scripted answer on screen", 60_000);

      session.resize({ cols: 120, rows: 40 });
      session.detach();
      const listed = (await root.pty.list()).sessions.find((s) => s.sessionId === session.sessionId);
      assert.equal(listed?.state, "running", "a detached session runs on");
      assert.deepEqual([listed?.cols, listed?.rows, listed?.linuxUser], [120, 40, "root"]);
      // Without linuxUser the attach is the default user's (claude), who does not own it.
      await assert.rejects(vm!.pty.attach({ session: session.sessionId }), /Unexpected server response: 403/);

      const again = terminal();
      const attached = await root.pty.attach({ session: session.sessionId, onData: again.onData, onExit: (code) => exited(code) });
      await again.waitFor(new RegExp(INTERACTIVE), "the answer in the replayed scrollback");
      attached.signal("sigkill");
      assert.equal(typeof (await Promise.race([exit, sleep(20_000).then(() => assert.fail("no exit within 20 s"))])), "number");
      attached.detach();
    } finally {
      await root.pty.close(session.sessionId).catch(() => undefined);
    }
  });

  it("Agent SDK: query() through the guide's spawnInVm over the 0.2.17 PTY ends with the scripted result", async (ctx) => {
    if (skip()) return ctx.skip(String(skip()));
    const t0 = Date.now();
    const response = query({
      prompt: "Run the seed bridge task",
      options: {
        spawnClaudeCodeProcess: spawnInVm(vm!),
        pathToClaudeCodeExecutable: "/root/.local/bin/claude",
        env: { ...process.env, ANTHROPIC_API_KEY: KEY, HOME: "/root", PATH: "/root/.local/bin:/usr/bin:/bin" },
        canUseTool: async (_tool, input) => ({ behavior: "allow", updatedInput: input }),
      },
    });
    let result: { subtype?: string; result?: string } | undefined;
    for await (const message of response) {
      if (message.type === "result") {
        result = message;
        break; // one-shot: stop the stream; the bridge tears the CLI down
      }
    }
    console.log(`# Agent SDK query() to result over the v5 PTY: ${Date.now() - t0} ms`);
    assert.equal(result?.subtype, "success", JSON.stringify(result));
    assert.equal(result?.result, BRIDGE_DONE);
    assert.equal((await vm!.exec({ command: "cat /root/bridge.txt", linuxUser: "root" })).stdout, "via the v5 PTY\n");
    // The bridge's sigkill ended its session: nothing of it runs on.
    for (let i = 0; i < 50 && (await vm!.pty.list()).sessions.some((s) => s.state === "running"); i++) await sleep(100);
    assert.deepEqual((await vm!.pty.list()).sessions.filter((s) => s.state === "running"), []);
  });

  it("deletes the VM and the snapshot", async (ctx) => {
    if (skip()) return ctx.skip(String(skip()));
    await vm!.delete();
    made.splice(made.indexOf(vm!), 1);
    await freestyle.vms.snapshots.delete(snapshotId!);
    snapshots.splice(snapshots.indexOf(snapshotId!), 1);
    assert.deepEqual((await freestyle.vms.list()).vms, []);
    assert.deepEqual((await freestyle.vms.snapshots.list()).snapshots, []);
  });
});

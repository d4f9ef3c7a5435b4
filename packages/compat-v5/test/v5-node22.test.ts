/**
 * The official `freestyle@0.2.17` client on Node 22 (the other compat-v5 tests run it on Node 20,
 * the test runner's Node). The server cannot run in-process on Node 22 (better-sqlite3 is built
 * for Node 20's ABI), so a real `capsule serve` runs as a child on a scratch data dir and the
 * client side, test-support/walkthrough.ts (the freestyle client and the Agent SDK), runs under a
 * Node 22 that scripts/node22.sh fetches once from the npm registry into a cache. Without that
 * Node the test fails under CI and skips elsewhere, saying why.
 *
 * The scripted Messages API runs here, in the test: it holds the conversation's script, and what
 * reached it (the API key Claude Code sent from inside the VM) is checked here, not reported by
 * the script under test. The VM reaches it through the one host port the server allows.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, it } from "node:test";
import { DEFAULT_CLAUDE_CODE_VERSION, ensureClaudeCodeBinary } from "@capsule/sdk";
import { startFakeAnthropic } from "@capsule/sdk/fake-anthropic";
import { createKey, destroyDataDir, hostGap, scratchDir, spawnServer } from "@capsule/server/test-support";
import type { Walkthrough, WalkthroughOptions } from "../test-support/walkthrough.js";
import { assertResumedOnce } from "../test-support/v5.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const NODE22_SCRIPT = path.resolve(here, "../../../../scripts/node22.sh");
const WALKTHROUGH = path.resolve(here, "../test-support/walkthrough.js");
/** A fetch into an empty cache takes ~5 s here; a cached one, milliseconds. */
const FETCH_TIMEOUT_MS = 120_000;
/** The walk-through takes ~25 s here (two VMs, 50 MB each way, a snapshot, 400 MB of Claude Code up, the bridge). */
const WALKTHROUGH_TIMEOUT_MS = 240_000;
const MiB = 1024 * 1024;

const API_KEY = "sk-ant-capsule-node22-0123456789abcdefghijKLMNOPQRST";
const BRIDGE_PROMPT = "Run the Node 22 bridge task";
const BRIDGE_DONE = "NODE22-BRIDGE-DONE";
const BRIDGE_FILE = "via the v5 PTY on Node 22\n";

/** The cached Node 22's path, or why there is none. */
async function node22(): Promise<{ bin: string } | { gap: string }> {
  try {
    const { stdout } = await promisify(execFile)("bash", [NODE22_SCRIPT], { timeout: FETCH_TIMEOUT_MS });
    return { bin: stdout.trim() };
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    return { gap: `Node 22 could not be fetched by scripts/node22.sh: ${(err.stderr || err.message).trim()}` };
  }
}

/** Runs the walk-through under `bin`; answers its JSON line, or fails with what it printed. */
async function walkthrough(bin: string, url: string, apiKey: string, opts: WalkthroughOptions): Promise<Walkthrough> {
  // Only what the client needs: no NODE_OPTIONS or test-runner variables leak into Node 22.
  const child = spawn(bin, [WALKTHROUGH, url, JSON.stringify(opts)], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", FREESTYLE_API_KEY: apiKey },
    stdio: ["ignore", "pipe", "pipe"],
    timeout: WALKTHROUGH_TIMEOUT_MS,
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString("utf8")));
  child.stderr.on("data", (d: Buffer) => (err += d.toString("utf8")));
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once("close", (c, s) => resolve([c, s])));
  const line = out.trim().split("\n").pop() ?? "";
  assert.equal(code, 0, `the walk-through exited ${code ?? signal}: ${line}\n${err.slice(-2000)}`);
  return JSON.parse(line) as Walkthrough;
}

describe("official client 0.2.17 on Node 22, against capsule serve", () => {
  it("create with a firewall, exec as root and as linuxUser, 1 KB and 50 MB files (upload cut and resumed), snapshot and boot, PTY, the Agent SDK bridge, delete", async (ctx) => {
    const gap = await hostGap();
    if (gap) {
      if (process.env.CI) throw new Error(`CI must run the sandbox tests, but: ${gap}`);
      return ctx.skip(gap);
    }
    const node = await node22();
    if ("gap" in node) {
      if (process.env.CI) assert.fail(node.gap);
      return ctx.skip(node.gap);
    }

    const claudeBin = await ensureClaudeCodeBinary();
    const fake = await startFakeAnthropic([{ match: new RegExp(BRIDGE_PROMPT), steps: [{ tool: "Write", input: { file_path: "/root/bridge.txt", content: BRIDGE_FILE } }, { text: BRIDGE_DONE }] }]);
    const dataDir = await scratchDir();
    const key = createKey(dataDir, "dana");
    const served = await spawnServer(dataDir, { allowedHostPorts: [fake.port] });
    try {
      const r = await walkthrough(node.bin, served.url, key, { claudeBin, messagesApi: { port: fake.port, vmBaseUrl: fake.vmBaseUrl, apiKey: API_KEY }, bridgePrompt: BRIDGE_PROMPT });
      ctx.diagnostic(`Node ${r.node}, step ms: ${JSON.stringify(r.stepMs)}`);
      if (r.pty.firstSize !== undefined) ctx.diagnostic(`stty size right after the resize printed ${JSON.stringify(r.pty.firstSize)}; asked again, it printed ${JSON.stringify(r.pty.size)}`);
      assert.match(r.node, /^v22\./);

      const rule = { vmId: "host", protocol: "tcp", port: fake.port };
      assert.equal(r.created.state, "running");
      assert.deepEqual([r.created.firewallRules, r.created.listedRules].map((rules) => (rules as Array<{ destination: unknown }>).map((x) => x.destination)), [[rule], [rule]]);

      assert.equal(r.exec.root, "root\n", "root while the image has no uid-1000 account");
      assert.equal(r.exec.rootExplicit, "0\n");
      assert.equal(r.exec.linuxUser, "claude\n/home/claude\n");
      assert.equal(r.exec.linuxUserOption, "claude\n");

      for (const [name, f, bytes] of [["1 KB", r.small, 1024], ["50 MB", r.big, 50 * 1000 * 1000]] as const) {
        assert.equal(f.bytes, bytes);
        assert.match(f.sent, /^[0-9a-f]{64}$/);
        assert.deepEqual([f.read, f.guest], [f.sent, f.sent], `${name}: read back and in the guest, the bytes sent`);
      }
      // 50 MB in the client's 16 MiB chunks, the second cut half-way by the client and sent again.
      assert.equal(r.big.cutAt, 16 * MiB);
      assertResumedOnce(r.big.uploadCalls, r.big.cutAt, [0, 16 * MiB, 32 * MiB]);
      assert.equal(r.big.leftChunks, "", "nothing of the upload is left in the VM");

      assert.equal(r.snapshot.contents, "memory+disk");
      assert.match(r.snapshot.bootedFrom ?? "", /./);
      assert.equal(r.snapshot.bootedBig, r.big.sent, "the booted VM has the snapshot's file");
      assert.equal(r.snapshot.bootedUser, "claude\n", "and its user");

      assert.equal(r.pty.output, "pty-user=claude pty-42", "the PTY runs as the default (uid-1000) user");
      assert.equal(r.pty.size, "40 120", "stty size inside after the resize");
      assert.deepEqual(r.pty.detached, { state: "running", cols: 120, rows: 40 }, "a detached session runs on");
      assert.equal(r.pty.attachedSession, r.pty.sessionId);
      assert.ok(r.pty.attachSaw, "the attach by id shows what the shell printed while detached");
      assert.ok(!r.pty.detachedClientSaw, "the detached client got nothing more");
      assert.equal(r.pty.exitCode, 137, "sigkill");
      assert.notEqual(r.pty.stateAfterKill, "running");

      assert.equal(r.claude.version.split(" ")[0], DEFAULT_CLAUDE_CODE_VERSION);
      assert.deepEqual(r.bridge, { subtype: "success", result: BRIDGE_DONE, wrote: BRIDGE_FILE, runningSessions: 0 }, "query() over the PTY: the scripted Write landed and the result came back");
      assert.ok(fake.turns().length >= 2, "the Write and the final turn came from the VM");
      assert.ok(fake.turns().every((t) => t.headers["x-api-key"] === API_KEY), "with the key the bridge forwarded");

      assert.deepEqual(r.deleted, { vmStatus: 404, bootedStatus: 404 });
    } finally {
      served.child.kill("SIGTERM");
      await new Promise((resolve) => served.child.once("exit", resolve));
      await destroyDataDir(dataDir);
      await fake.close();
    }
  });
});

/**
 * The official `freestyle@0.2.17` client on Node 22 (the other compat-v5 tests run it on Node 20,
 * the test runner's Node). The server cannot run in-process on Node 22 (better-sqlite3 is built
 * for Node 20's ABI), so a real `capsule serve` runs as a child on a scratch data dir and the
 * client side, test-support/walkthrough.ts, runs under a Node 22 that scripts/node22.sh fetches
 * once from the npm registry into a cache. Without that Node the test fails under CI and skips
 * elsewhere, saying why.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, it } from "node:test";
import { createKey, destroyDataDir, hostGap, scratchDir, spawnServer } from "@capsule/server/test-support";
import type { Walkthrough } from "../test-support/walkthrough.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const NODE22_SCRIPT = path.resolve(here, "../../../../scripts/node22.sh");
const WALKTHROUGH = path.resolve(here, "../test-support/walkthrough.js");
/** A fetch into an empty cache takes ~5 s here; a cached one, milliseconds. */
const FETCH_TIMEOUT_MS = 120_000;
/** The walk-through takes ~15 s here (two VMs, 20 MB each way, a snapshot). */
const WALKTHROUGH_TIMEOUT_MS = 90_000;

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
async function walkthrough(bin: string, url: string, apiKey: string): Promise<Walkthrough> {
  // Only what the client needs: no NODE_OPTIONS or test-runner variables leak into Node 22.
  const child = spawn(bin, [WALKTHROUGH, url], {
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
  it("create with a firewall, exec as root and as linuxUser, 1 KB and 20 MB files, snapshot and boot, PTY, delete", async (ctx) => {
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

    const dataDir = await scratchDir();
    const key = createKey(dataDir, "dana");
    const served = await spawnServer(dataDir);
    try {
      const r = await walkthrough(node.bin, served.url, key);
      ctx.diagnostic(`Node ${r.node}, step ms: ${JSON.stringify(r.stepMs)}`);
      assert.match(r.node, /^v22\./);

      assert.equal(r.created.state, "running");
      assert.deepEqual([r.created.firewallRules, r.created.listedRules], [[], []]);

      assert.equal(r.exec.root, "root\n", "root while the image has no uid-1000 account");
      assert.equal(r.exec.rootExplicit, "0\n");
      assert.equal(r.exec.linuxUser, "claude\n/home/claude\n");
      assert.equal(r.exec.linuxUserOption, "claude\n");

      for (const [name, f, bytes] of [["1 KB", r.small, 1024], ["20 MB", r.big, 20 * 1024 * 1024]] as const) {
        assert.equal(f.bytes, bytes);
        assert.match(f.sent, /^[0-9a-f]{64}$/);
        assert.deepEqual([f.read, f.guest], [f.sent, f.sent], `${name}: read back and in the guest, the bytes sent`);
      }
      // 20 MiB in the client's 16 MiB chunks: one create, two chunks, one commit.
      assert.deepEqual(r.uploadRequests, { POST: 2, PUT: 2 }, "the 20 MB write went through the chunked upload");

      assert.equal(r.snapshot.contents, "disk");
      assert.match(r.snapshot.bootedFrom ?? "", /./);
      assert.equal(r.snapshot.bootedBig, r.big.sent, "the booted VM has the snapshot's file");
      assert.equal(r.snapshot.bootedUser, "claude\n", "and its user");

      assert.equal(r.pty.output, "pty-user=claude pty-42", "the PTY runs as the default (uid-1000) user");
      assert.equal(r.pty.closedSession, r.pty.sessionId);
      assert.notEqual(r.pty.stateAfterClose, "running");

      assert.deepEqual(r.deleted, { vmStatus: 404, bootedStatus: 404 });
    } finally {
      served.child.kill("SIGTERM");
      await new Promise((resolve) => served.child.once("exit", resolve));
      await destroyDataDir(dataDir);
    }
  });
});

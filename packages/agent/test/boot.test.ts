import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Client, exec, sleep } from "../test-support/harness.js";

// The agent behind capsule-boot (native/boot.c), as a VM starts it: boot listens and starts the
// fork server, then becomes Node, which takes both over.
const PACKAGE_DIR = fileURLToPath(new URL("../../", import.meta.url));
const START_TIMEOUT_MS = 10_000;

interface Booted {
  child: ChildProcess;
  socket: string;
  log: () => string;
}

let dir: string;
let boot: string;
let helper: string;
const started: ChildProcess[] = [];

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "capsule-boot-test-"));
  boot = path.join(dir, "capsule-boot");
  helper = path.join(dir, "capsule-spawn");
  execFileSync("gcc", ["-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", boot, path.join(PACKAGE_DIR, "native/boot.c")]);
  execFileSync(process.execPath, [path.join(PACKAGE_DIR, "scripts/compile-helper.mjs"), helper]);
});
after(async () => {
  for (const child of started) {
    if (child.exitCode !== null) continue;
    child.kill("SIGTERM");
    await new Promise((resolve) => child.once("exit", resolve));
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

/** capsule-boot SOCKET FIFO_DIR HELPER -- node main.js, ready once the agent logs that it listens. */
async function startBooted(name: string, fifoDir: string): Promise<Booted> {
  const socket = path.join(dir, name, "agent.sock");
  const child = spawn(boot, [socket, fifoDir, helper, "--", process.execPath, path.join(PACKAGE_DIR, "dist/src/main.js")], {
    env: { PATH: process.env.PATH, CAPSULE_AGENT_SOCKET: socket, CAPSULE_SPAWN_HELPER: helper, CAPSULE_SERVICES_DIR: path.join(dir, name, "services") },
    stdio: ["ignore", "inherit", "pipe"],
  });
  started.push(child);
  let log = "";
  child.stderr?.on("data", (chunk: Buffer) => (log += chunk.toString()));
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!log.includes("listening on")) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the agent did not start behind capsule-boot:\n${log}`);
    await sleep(20);
  }
  return { child, socket, log: () => log };
}

test("behind capsule-boot the agent takes over its socket and fork server, and its commands see neither", async () => {
  const agent = await startBooted("ok", path.join(dir, "ok-fifo"));
  assert.match(agent.log(), /socket from capsule-boot/);
  const version = await (await Client.open(agent.socket, { op: "version" })).json();
  assert.equal(version.type, "version");
  assert.equal(fs.statSync(agent.socket).mode & 0o777, 0o600);
  // The command's parent is the fork server capsule-boot forked: a child of the agent's process
  // (capsule-boot became Node), with no fork of Node in between.
  const r = await exec(agent.socket, { command: "tr '\\0' ' ' < /proc/$PPID/cmdline; echo; cut -d' ' -f4 /proc/$PPID/stat; ls /proc/$$/fd; env" });
  assert.equal(r.exit.code, 0, r.stderr);
  const [cmdline = "", zygoteParent = "", ...rest] = r.stdout.split("\n");
  assert.match(cmdline, /capsule-spawn --server/);
  assert.equal(Number(zygoteParent), agent.child.pid);
  assert.doesNotMatch(rest.join("\n"), /CAPSULE_LISTEN_FD|CAPSULE_ZYGOTE/);
  // Only the shell's stdio and the fd ls opens: neither the listener nor the zygote's pipes.
  const fds = rest.filter((line) => /^\d+$/.test(line)).map(Number);
  assert.ok(fds.every((fd) => fd <= 3), `inherited fds: ${fds.join(" ")}`);
});

test("what capsule-boot cannot do is left to the agent, which does it itself", async () => {
  // A fork server dir under a regular file cannot be made: the agent starts its own fork server
  // after the first request, as it does without capsule-boot.
  const file = path.join(dir, "not-a-dir");
  fs.writeFileSync(file, "");
  const agent = await startBooted("nofifo", path.join(file, "fifo"));
  assert.match(agent.log(), /capsule-boot: mkdir .*left to the agent/);
  assert.match(agent.log(), /socket from capsule-boot/);
  const r = await exec(agent.socket, { command: "echo ok" });
  assert.equal(r.stdout, "ok\n");
});

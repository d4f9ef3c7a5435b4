import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, test } from "node:test";
import { FrameType } from "@capsule/agent-protocol";
import { Client, call, exec, expectError, processGone, startAgent, waitUntil, withUser, type Agent } from "../test-support/harness.js";

let agent: Agent;
before(async () => {
  agent = await startAgent();
});
after(async () => {
  await agent?.stop();
});

test("exec streams stdout and stderr and reports the exit code", async () => {
  const r = await exec(agent.socket, { command: "echo out; echo err >&2; exit 3" });
  assert.equal(r.stdout, "out\n");
  assert.equal(r.stderr, "err\n");
  assert.deepEqual(r.exit, { type: "exit", code: 3, signal: null, timedOut: false });
  assert.ok(r.pid > 0);
});

test("commands are started by the fork server, not by forking the agent", async () => {
  const r = await exec(agent.socket, { command: "tr '\\0' ' ' < /proc/$PPID/cmdline" });
  assert.match(r.stdout, /capsule-spawn --server /);
});

test("many quick commands at once all finish, each with its own output (slots prepared ahead)", async () => {
  // A command this quick can end before its start is reported; none may be lost or mixed up.
  for (let round = 0; round < 3; round++) {
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => exec(agent.socket, { command: i % 2 ? "true" : `echo ${i}` })));
    results.forEach((r, i) => {
      assert.equal(r.exit.code, 0);
      assert.equal(r.stdout, i % 2 ? "" : `${i}\n`);
    });
  }
});

test("stdin frames reach the command and Eof closes its stdin", async () => {
  const r = await exec(agent.socket, { command: "cat; echo done" }, "hello\nworld\n");
  assert.equal(r.stdout, "hello\nworld\ndone\n");
  assert.equal(r.exit.code, 0);
});

test("a timeout kills the whole process group", async () => {
  const started = Date.now();
  const r = await exec(agent.socket, { command: "sleep 1000 & echo $!; wait", timeoutMs: 500 });
  assert.equal(r.exit.timedOut, true);
  assert.equal(r.exit.signal, "SIGKILL");
  assert.ok(Date.now() - started < 5_000);
  const grandchild = Number(r.stdout.trim());
  assert.ok(grandchild > 0);
  assert.ok(await waitUntil(() => processGone(grandchild)), `sleep ${grandchild} survived the timeout`);
});

test("a signal control message reaches the process group", async () => {
  const client = await Client.open(agent.socket, { op: "exec", command: "sleep 1000" });
  try {
    assert.equal((await client.json()).type, "started");
    client.sendJson({ type: "signal", signal: "SIGTERM" });
    assert.deepEqual(await client.json(), { type: "exit", code: null, signal: "SIGTERM", timedOut: false });
  } finally {
    await client.close();
  }
});

test("the host hanging up kills the process group", async () => {
  const client = await Client.open(agent.socket, { op: "exec", command: "sleep 1000 & echo $!; wait" });
  assert.equal((await client.json()).type, "started");
  const frame = await client.next();
  assert.equal(frame.type, FrameType.Stdout);
  const grandchild = Number(frame.payload.toString().trim());
  await client.close();
  assert.ok(await waitUntil(() => processGone(grandchild)), `sleep ${grandchild} survived the hang-up`);
});

test("the environment is clean, request env is added, cwd defaults to HOME", async () => {
  const r = await exec(agent.socket, { command: "env; pwd", env: { FOO: "bar" } });
  const lines = r.stdout.trim().split("\n");
  assert.ok(lines.includes("FOO=bar"));
  assert.ok(lines.includes("USER=root"));
  assert.ok(lines.includes("HOME=/root"));
  assert.ok(lines.includes("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
  assert.ok(!r.stdout.includes("CAPSULE"), `agent env leaked: ${r.stdout}`);
  assert.equal(lines.at(-1), "/root");
});

test("cwd is honoured, and a missing cwd or user is a clear error", async () => {
  assert.equal((await exec(agent.socket, { command: "pwd", cwd: "/tmp" })).stdout, "/tmp\n");
  expectError(await call(agent.socket, { op: "exec", command: "true", cwd: "/no/such/dir" }), "FILE_NOT_FOUND");
  expectError(await call(agent.socket, { op: "exec", command: "true", user: "no-such-user-here" }), "USER_NOT_FOUND");
});

test("exec as a user gets exactly its uid, gid and supplementary groups", async () => {
  await withUser(async (user) => {
    const r = await exec(agent.socket, { command: "id -u; id -g; id -G; echo $HOME $USER", user: user.name });
    const [uid, gid, groups, who] = r.stdout.trim().split("\n");
    assert.equal(Number(uid), user.uid);
    assert.equal(Number(gid), user.gid);
    const expected = execFileSync("id", ["-G", user.name], { encoding: "utf8" }).trim().split(" ").map(Number).sort();
    const actual = (groups ?? "").split(" ").map(Number).sort();
    assert.deepEqual(actual, expected);
    assert.ok(actual.includes(user.extraGid), "the supplementary group is missing");
    assert.ok(!actual.includes(0), "root's group leaked into the user's process");
    assert.equal(who, `/home/${user.name} ${user.name}`);
    // -M: no home directory, so the cwd falls back to /.
    assert.equal((await exec(agent.socket, { command: "pwd", user: user.name })).stdout, "/\n");
  });
});

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { FrameType, type PtySessionInfo, type Reply } from "@capsule/agent-protocol";
import { Client, call, expectError, sleep, startAgent, withUser, type Agent } from "../test-support/harness.js";

let agent: Agent;
before(async () => {
  agent = await startAgent();
});
after(async () => {
  await agent?.stop();
});

function sessionOf(reply: Reply): PtySessionInfo {
  if (reply.type !== "session") throw new Error(`expected a session reply, got ${JSON.stringify(reply)}`);
  return reply.session;
}

async function listed(sessionId: string): Promise<PtySessionInfo | undefined> {
  const reply = await call(agent.socket, { op: "pty.list" });
  assert.equal(reply.type, "sessions");
  return reply.type === "sessions" ? reply.sessions.find((s) => s.sessionId === sessionId) : undefined;
}

test("a PTY session: typing, resize, SIGINT, 0x1E, detach and re-attach, exit", async () => {
  const first = await Client.open(agent.socket, { op: "pty.open", cols: 80, rows: 24 });
  let session: PtySessionInfo;
  try {
    session = sessionOf(await first.json());
    assert.equal(session.running, true);
    assert.equal(session.user, "root");

    await first.sendStdin("echo hi\r");
    await first.output(/[\r\n]hi\r\n/);

    first.sendJson({ type: "resize", cols: 100, rows: 30 });
    await first.sendStdin('echo "<$(stty size)>"\r');
    await first.output(/<30 100>/);

    await first.sendStdin("sleep 100\r");
    await sleep(300);
    first.sendJson({ type: "signal", signal: "SIGINT" });
    await first.sendStdin("echo done$((40+2))\r");
    await first.output(/[\r\n]done42\r\n/, 5_000);

    // Clients type a boot line with a literal 0x1E; readline must insert it, not drop it.
    await first.sendStdin("printf '%s' 'A\x1eB' | od -An -tx1\r");
    await first.output(/41 1e 42/);
  } finally {
    await first.close(); // detach: the session keeps running
  }
  assert.equal((await listed(session.sessionId))?.running, true);

  const second = await Client.open(agent.socket, { op: "pty.attach", sessionId: session.sessionId });
  try {
    assert.equal(sessionOf(await second.json()).sessionId, session.sessionId);
    const replay = await second.next();
    assert.equal(replay.type, FrameType.Stdout);
    assert.match(replay.payload.toString(), /done42[\s\S]*41 1e 42/);

    await second.sendStdin("exit 7\r");
    let reply: Reply | undefined;
    while (!reply) {
      const frame = await second.next();
      if (frame.type === FrameType.Json) reply = JSON.parse(frame.payload.toString()) as Reply;
    }
    assert.deepEqual(reply, { type: "exit", code: 7, signal: null });
    await second.closed;
  } finally {
    await second.close();
  }
  const after = await listed(session.sessionId);
  assert.equal(after?.running, false);
  assert.equal(after?.exitCode, 7);
});

test("several clients: output goes to all, the size is the smallest", async () => {
  const a = await Client.open(agent.socket, { op: "pty.open", cols: 120, rows: 40, command: ["/bin/sh"] });
  const { sessionId } = sessionOf(await a.json());
  const b = await Client.open(agent.socket, { op: "pty.attach", sessionId, cols: 90, rows: 50 });
  try {
    sessionOf(await b.json());
    await a.sendStdin('echo "<$(stty size)>"\r');
    await a.output(/<40 90>/);
    await b.output(/<40 90>/);
    await b.close();
    await a.sendStdin('echo "<$(stty size)>"\r');
    await a.output(/<40 120>/);
  } finally {
    await b.close();
    await a.close();
  }
  const closed = await call(agent.socket, { op: "pty.close", sessionId });
  assert.equal(closed.type, "closed");
  assert.equal((await listed(sessionId))?.running, false);
});

test("attach checks the session and its user; pty.close kills a session", async () => {
  expectError(await call(agent.socket, { op: "pty.attach", sessionId: "no-such-session" }), "SESSION_NOT_FOUND");
  const a = await Client.open(agent.socket, { op: "pty.open", cols: 80, rows: 24, command: ["sleep", "1000"] });
  const { sessionId, pid } = sessionOf(await a.json());
  await a.close();
  expectError(await call(agent.socket, { op: "pty.attach", sessionId, user: "nobody" }), "SESSION_USER_MISMATCH");
  const closed = await call(agent.socket, { op: "pty.close", sessionId });
  assert.deepEqual(closed, { type: "closed", sessionId, exitCode: null });
  assert.throws(() => process.kill(pid, 0));
});

test("a PTY as a user has the user's identity and groups", async () => {
  await withUser(async (user) => {
    const a = await Client.open(agent.socket, { op: "pty.open", cols: 80, rows: 24, user: user.name });
    try {
      const session = sessionOf(await a.json());
      assert.equal(session.user, user.name);
      await a.sendStdin("echo \"<$(id -u):$(id -G | tr ' ' ,)>\"; exit\r");
      const out = await a.output(/<\d+:[\d,]+>/);
      const [, uid, groups] = /<(\d+):([\d,]+)>/.exec(out) ?? [];
      assert.equal(Number(uid), user.uid);
      assert.deepEqual((groups ?? "").split(",").map(Number).sort(), [user.gid, user.extraGid].sort());
      await a.closed;
    } finally {
      await a.close();
    }
  });
});

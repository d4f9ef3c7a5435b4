import assert from "node:assert/strict";
import fs from "node:fs";
import { after, before, test } from "node:test";
import { AGENT_PROTOCOL_VERSION, FrameType, encodeFrame } from "@capsule/agent-protocol";
import { Client, call, expectError, processGone, startAgent, waitUntil, type Agent } from "../test-support/harness.js";

let agent: Agent;
before(async () => {
  agent = await startAgent();
});
after(async () => {
  await agent?.stop();
});

test("version reports the package version, protocol and pid", async () => {
  const reply = await call(agent.socket, { op: "version" });
  assert.equal(reply.type, "version");
  if (reply.type !== "version") return;
  assert.equal(reply.version, "0.1.0");
  assert.equal(reply.protocol, AGENT_PROTOCOL_VERSION);
  assert.ok(reply.pid > 0);
});

test("sync replies ok", async () => {
  assert.deepEqual(await call(agent.socket, { op: "sync" }), { type: "ok" });
});

test("the socket is private to root", () => {
  assert.equal(fs.statSync(agent.socket).mode & 0o777, 0o600);
});

async function rawReply(data: Buffer): Promise<unknown> {
  const client = await Client.connect(agent.socket);
  try {
    client.writeRaw(data);
    const reply = await client.json();
    await client.closed; // the agent hangs up after an error
    return reply;
  } finally {
    await client.close();
  }
}

test("malformed requests get an error reply and never crash the agent", async () => {
  const bad = [
    encodeFrame(FrameType.Json, "{not json"),
    encodeFrame(FrameType.Json, "[1,2]"),
    encodeFrame(FrameType.Stdin, "hello"),
    encodeFrame(FrameType.Json, JSON.stringify({ op: "launch-missiles" })),
    encodeFrame(FrameType.Json, JSON.stringify({ op: "exec" })),
    encodeFrame(FrameType.Json, JSON.stringify({ op: "pty.open", cols: -1, rows: 10 })),
    Buffer.from([FrameType.Json, 0xff, 0xff, 0xff, 0xff]), // oversized frame
    Buffer.from([42, 0, 0, 0, 0]), // unknown frame type
  ];
  for (const data of bad) {
    const reply = await rawReply(data);
    assert.equal((reply as { type: string }).type, "error", `for ${data.subarray(0, 40).toString("hex")}`);
    assert.equal((reply as { code: string }).code, "BAD_REQUEST");
  }
  // A peer that vanishes mid-frame.
  const client = await Client.connect(agent.socket);
  client.writeRaw(Buffer.from([FrameType.Json, 0, 0, 1, 0, 0x7b]));
  await client.close();
  assert.equal((await call(agent.socket, { op: "version" })).type, "version");
});

test("a bad control message mid-exec is an error, and the process is killed", async () => {
  const client = await Client.open(agent.socket, { op: "exec", command: "sleep 1000" });
  try {
    const started = await client.json();
    assert.equal(started.type, "started");
    client.sendJson({ type: "signal", signal: "SIGSEGV" });
    expectError(await client.json(), "BAD_REQUEST");
    await client.closed;
    if (started.type === "started") assert.ok(await waitUntil(() => processGone(started.pid)));
  } finally {
    await client.close();
  }
});

test("SIGTERM stops the agent and everything it started", async () => {
  const own = await startAgent();
  try {
    const exec = await Client.open(own.socket, { op: "exec", command: "sleep 1001 & echo $!; wait" });
    const started = await exec.json();
    const grandchild = Number((await exec.next()).payload.toString());
    const pty = await Client.open(own.socket, { op: "pty.open", cols: 80, rows: 24, command: ["/bin/sh", "-c", "sleep 1002 & sleep 1003"] });
    const session = await pty.json();
    await own.stop();
    assert.ok(started.type === "started" && session.type === "session");
    assert.ok(await waitUntil(() => processGone(started.pid) && processGone(grandchild) && processGone(session.session.pid)));
  } finally {
    await own.stop();
  }
});

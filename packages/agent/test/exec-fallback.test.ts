import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { exec, startAgent, withUser, type Agent } from "../test-support/harness.js";

// Without the fork server (CAPSULE_FIFO_DIR=off, or after it died) exec falls back to Node's spawn.
let agent: Agent;
before(async () => {
  agent = await startAgent({ CAPSULE_FIFO_DIR: "off" });
});
after(async () => {
  await agent?.stop();
});

test("fallback exec: output, stdin to EOF, exit code, and no fork server involved", async () => {
  const r = await exec(agent.socket, { command: "cat; echo err >&2; tr '\\0' ' ' < /proc/$PPID/cmdline; exit 4" }, "in\n");
  assert.match(r.stdout, /^in\n/);
  assert.doesNotMatch(r.stdout, /--server/);
  assert.equal(r.stderr, "err\n");
  assert.equal(r.exit.code, 4);
});

test("fallback exec as a user keeps exactly the user's groups", async () => {
  await withUser(async (user) => {
    const r = await exec(agent.socket, { command: "id -u; id -G", user: user.name });
    const [uid, groups] = r.stdout.trim().split("\n");
    assert.notEqual(uid, "0");
    assert.ok(!(groups ?? "").split(" ").includes("0"), `root group leaked: ${groups}`);
  });
});

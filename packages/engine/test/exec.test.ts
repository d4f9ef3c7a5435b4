import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { useEngine } from "../test-support/harness.js";

describe("exec", () => {
  const t = useEngine();
  let vm: string;

  it("runs a command as root with stdout, stderr and exit code", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    vm = (await engine.createVm()).id;
    const r = await engine.guest.exec(vm, { command: "echo out; echo err >&2; id -u; exit 3" });
    assert.equal(r.stdout, "out\n0\n");
    assert.equal(r.stderr, "err\n");
    assert.equal(r.exitCode, 3);
  });

  it("runs multi-line scripts with env and cwd", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const r = await engine.guest.exec(vm, { command: "cd /tmp\npwd\necho \"$GREETING\"", env: { GREETING: "hello there" } });
    assert.equal(r.stdout, "/tmp\nhello there\n");
    const r2 = await engine.guest.exec(vm, { command: "pwd", cwd: "/srv" });
    assert.equal(r2.stdout.trim(), "/srv");
  });

  it("runs as a user made with useradd: real uid, groups and HOME; no /root, no agent socket", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const mk = await engine.guest.exec(vm, { command: "groupadd devs && useradd -m -s /bin/bash -G devs alice && chmod 700 /root && echo secret > /root/s" });
    assert.equal(mk.exitCode, 0, mk.stderr);
    const who = await engine.guest.exec(vm, { command: "id -u; id -gn; id -Gn; echo $HOME; whoami", user: "alice" });
    const [uid, gname, groups, home, name] = who.stdout.trim().split("\n");
    assert.notEqual(uid, "0");
    assert.equal(gname, "alice");
    assert.deepEqual(groups?.split(" ").sort(), ["alice", "devs"]);
    assert.equal(home, "/home/alice");
    assert.equal(name, "alice");
    const root = await engine.guest.exec(vm, { command: "cat /root/s", user: "alice" });
    assert.notEqual(root.exitCode, 0);
    assert.match(root.stderr, /Permission denied/);
    const sock = await engine.guest.exec(vm, { command: "ls /.capsule-run/ 2>&1; exec 3<>/dev/null; cat /.capsule-run/agent.sock 2>&1; echo rc=$?", user: "alice" });
    assert.match(sock.stdout, /Permission denied/);
    assert.doesNotMatch(sock.stdout, /agent\.sock\n/);
    // What `claude --dangerously-skip-permissions` checks: a real non-root uid and euid.
    const ids = await engine.guest.exec(vm, { command: "cat /proc/self/status | grep -E '^(Uid|Gid|Groups):'", user: "alice" });
    const uidLine = ids.stdout.split("\n").find((l) => l.startsWith("Uid:")) ?? "";
    assert.ok(uidLine.split(/\s+/).slice(1).every((v) => v === uid), uidLine);
    const groupsLine = ids.stdout.split("\n").find((l) => l.startsWith("Groups:")) ?? "";
    assert.ok(!groupsLine.split(/\s+/).slice(1).includes("0"), `root group leaked: ${groupsLine}`);
  });

  it("reports an unknown user clearly", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    await assert.rejects(engine.guest.exec(vm, { command: "true", user: "nobody-here" }), (e: Error & { agentCode?: string }) => e.agentCode === "USER_NOT_FOUND");
  });

  it("times out by killing the whole process group", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const r = await engine.guest.exec(vm, { command: "sleep 300 & sleep 301; echo never", timeoutMs: 500 });
    assert.equal(r.timedOut, true);
    assert.equal(r.stdout, "");
    const ps = await engine.guest.exec(vm, { command: "ps -eo args | grep -c '^sleep 30[01]' || true" });
    assert.equal(ps.stdout.trim(), "0");
  });

  it("spawn streams stdin to EOF, and kill() ends a process", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const p = await engine.guest.spawn(vm, { command: "cat; echo done >&2" });
    p.stdin.write("hello ");
    p.stdin.end("world");
    let out = "";
    let err = "";
    p.stdout.on("data", (c: Buffer) => (out += c));
    p.stderr.on("data", (c: Buffer) => (err += c));
    const exit = await p.exited;
    assert.equal(out, "hello world");
    assert.equal(err, "done\n");
    assert.equal(exit.exitCode, 0);
    const k = await engine.guest.spawn(vm, { command: "sleep 100" });
    k.stdout.resume();
    k.stderr.resume();
    k.kill("SIGKILL");
    const ke = await k.exited;
    assert.equal(ke.signal, "SIGKILL");
    assert.equal(ke.exitCode, null);
  });
});

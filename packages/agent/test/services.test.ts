/** The service supervisor, through the protocol, with the agent run directly on this host. */
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import type { Reply, ServiceSpec, ServiceStatus } from "@capsule/agent-protocol";
import { call, expectError, processGone, sleep, startAgent, type Agent } from "../test-support/harness.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "capsule-services-test-"));
const env = { CAPSULE_SERVICES_DIR: path.join(dir, "defs"), CAPSULE_SERVICE_LOG_DIR: path.join(dir, "logs") };
let agent: Agent;
before(async () => {
  agent = await startAgent(env);
});
after(async () => {
  await agent?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const spec = (name: string, exec: string[], extra: Partial<ServiceSpec> = {}): ServiceSpec => ({ name, mode: "service", exec, enable: true, ...extra });

async function define(services: ServiceSpec[], opts = { replace: false, start: true }): Promise<ServiceStatus[]> {
  const r = await call(agent.socket, { op: "svc.define", services, ...opts });
  assert.equal(r.type, "services", JSON.stringify(r));
  return (r as Extract<Reply, { type: "services" }>).services;
}

async function status(name: string): Promise<ServiceStatus> {
  const r = await call(agent.socket, { op: "svc.status", name });
  assert.equal(r.type, "service", JSON.stringify(r));
  return (r as Extract<Reply, { type: "service" }>).status;
}

async function logs(name: string, lines?: number): Promise<string[]> {
  const r = await call(agent.socket, { op: "svc.logs", name, ...(lines ? { lines } : {}) });
  assert.equal(r.type, "logs", JSON.stringify(r));
  return (r as Extract<Reply, { type: "logs" }>).entries.map((e) => `${e.stream}: ${e.message}`);
}

async function eventually(check: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

test("a service starts, logs its lines with timestamps, and a stop kills its process group", async () => {
  const [st] = await define([spec("web", ["echo hello; echo oops >&2; sleep 1000 & sleep 1000"])]);
  assert.equal(st?.activeState, "active");
  assert.equal(st?.subState, "running");
  const pid = st?.pid as number;
  await eventually(async () => (await logs("web")).includes("stderr: oops"), "its stderr line");
  assert.ok((await logs("web")).includes("stdout: hello"));
  const r = await call(agent.socket, { op: "svc.logs", name: "web", lines: 1 });
  assert.ok(r.type === "logs" && r.entries.length === 1 && r.entries[0]!.timeMs > Date.now() - 60_000);
  expectError(await call(agent.socket, { op: "svc.define", services: [spec("web", ["true"])], replace: false, start: false }), "ALREADY_EXISTS");
  const stopped = await call(agent.socket, { op: "svc.control", name: "web", action: "stop" });
  assert.ok(stopped.type === "service" && stopped.status.activeState === "inactive" && stopped.status.subState === "dead");
  assert.ok(processGone(pid));
  assert.equal(JSON.parse(fs.readFileSync(path.join(env.CAPSULE_SERVICES_DIR, "web.json"), "utf8")).name, "web");
  assert.equal(fs.statSync(path.join(env.CAPSULE_SERVICES_DIR, "web.json")).mode & 0o777, 0o600);
});

test("oneshots: remainAfterExit (active/exited), deleteAfterSuccess, a timeout fails them", async () => {
  const [kept] = await define([spec("once", ["echo one", "echo two"], { mode: "oneshot" })]);
  assert.deepEqual([kept?.activeState, kept?.subState], ["active", "exited"]);
  assert.deepEqual((await logs("once")).filter((l) => l.startsWith("stdout")), ["stdout: one", "stdout: two"]);
  const [gone] = await define([spec("tmp", ["true"], { mode: "oneshot", remainAfterExit: false, deleteAfterSuccess: true })]);
  assert.deepEqual([gone?.activeState, gone?.subState], ["inactive", "dead"]);
  await eventually(async () => (await call(agent.socket, { op: "svc.status", name: "tmp" })).type === "error", "the definition's removal");
  expectError(await call(agent.socket, { op: "svc.status", name: "tmp" }), "SERVICE_NOT_FOUND");
  const [slow] = await define([spec("slow", ["sleep 30"], { mode: "oneshot", timeoutSec: 0.3 })]);
  assert.deepEqual([slow?.activeState, slow?.result], ["failed", "timeout"]);
});

test("a crash loop is throttled by the start limit and ends failed; onFailure runs", async () => {
  const t0 = Date.now();
  await define([spec("handler", ["echo handled"], { mode: "oneshot", enable: false }), spec("crash", ["exit 3"], { restart: { policy: "always", restartSec: 0, startLimitBurst: 3, startLimitIntervalSec: 60 }, onFailure: ["handler"] })]);
  await eventually(async () => (await status("crash")).activeState === "failed", "the start limit");
  const st = await status("crash");
  assert.equal(st.result, "start-limit-hit");
  assert.equal(st.restarts, 2, "3 starts: the first and 2 restarts");
  assert.ok(Date.now() - t0 >= 200, "restarts were at least 100 ms apart");
  await eventually(async () => (await status("handler")).subState === "exited", "the onFailure handler");
  assert.ok((await logs("crash")).some((l) => l.includes("start limit")));
});

test("after/requires order starts; a missing or failed requirement stops a start", async () => {
  const marks = path.join(dir, "order");
  await define(
    [
      spec("c", [`echo c >> ${marks}`], { mode: "oneshot", after: ["b.service"], requires: ["b"] }),
      spec("b", [`sleep 0.2; echo b >> ${marks}`], { mode: "oneshot", after: ["a", "network.target"] }),
      spec("a", [`echo a >> ${marks}`], { mode: "oneshot" }),
    ],
  );
  assert.equal(fs.readFileSync(marks, "utf8"), "a\nb\nc\n");
  const [orphan] = await define([spec("orphan", ["true"], { requires: ["nope"] })]);
  assert.equal(orphan?.result, "dependency");
  const [child] = await define([spec("bad", ["exit 1"], { mode: "oneshot", enable: false }), spec("child", ["sleep 100"], { requires: ["bad"] })]).then((s) => s.filter((x) => x.name === "child"));
  assert.deepEqual([child?.activeState, child?.result], ["inactive", "dependency"]);
});

test("the agent starts enabled services again when it starts; a disabled one stays down", async () => {
  await define([spec("boot", ["sleep 1000"]), spec("manual", ["sleep 1000"], { enable: false })]);
  assert.equal((await status("manual")).activeState, "inactive");
  await agent.stop();
  agent = await startAgent(env); // its readiness probe is the first connection, after which services start
  await eventually(async () => (await status("boot")).subState === "running", "boot's start");
  assert.equal((await status("manual")).activeState, "inactive");
  assert.equal((await status("web")).activeState, "active", "web, enabled, started too");
});

test("a flood of output keeps the log within its two files; long lines are split", async () => {
  await define([spec("flood", ["head -c 5000 /dev/zero | tr '\\0' x; echo; yes flooding | head -c 8000000"], { mode: "oneshot" })]);
  const files = fs.readdirSync(env.CAPSULE_SERVICE_LOG_DIR).filter((f) => f.startsWith("flood.log"));
  const bytes = files.reduce((n, f) => n + fs.statSync(path.join(env.CAPSULE_SERVICE_LOG_DIR, f)).size, 0);
  assert.ok(bytes <= 2 * 1024 * 1024 + 256 * 1024, `${bytes} bytes in ${files.join(", ")}`);
  const tail = await logs("flood", 1000);
  assert.equal(tail.length, 1000);
  assert.equal(tail.at(-2), "stdout: flooding", "the output was read to its end...");
  assert.equal(tail.at(-1), "supervisor: Main process exited, status=0", "...before the run's end was logged");
});

test("names are file names: path characters and oversized fields are refused", async () => {
  for (const name of ["../x", "a/b", ".hidden", "-x", "", "x".repeat(200), "a\nb", "x.target"]) {
    expectError(await call(agent.socket, { op: "svc.define", services: [spec(name, ["true"])], replace: false, start: false }), "BAD_REQUEST");
  }
  expectError(await call(agent.socket, { op: "svc.status", name: "../../etc/passwd" }), "BAD_REQUEST");
  expectError(await call(agent.socket, { op: "svc.define", services: [spec("big", ["x".repeat(70_000)])], replace: false, start: false }), "BAD_REQUEST");
  expectError(await call(agent.socket, { op: "svc.status", name: "absent" }), "SERVICE_NOT_FOUND");
  const del = await call(agent.socket, { op: "svc.delete", name: "boot" });
  assert.deepEqual(del, { type: "ok" });
  assert.ok(!fs.existsSync(path.join(env.CAPSULE_SERVICES_DIR, "boot.json")));
});

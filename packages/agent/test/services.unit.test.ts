/** The supervisor's pure parts: start order, restart policy, start limit, log lines and rotation, systemd states. */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import type { ServiceSpec } from "@capsule/agent-protocol";
import { LOG_FILE_MAX_BYTES, LineSplitter, ServiceLogWriter, parseLogLine, readServiceLog } from "../src/services/log-file.js";
import { requiredBy, startPlan } from "../src/services/order.js";
import { MIN_RESTART_DELAY_MS, StartLimiter, UNLIMITED_RESTART_DELAY_MS, restartDelayMs, runResult, shouldRestart } from "../src/services/restart-policy.js";
import { isSettled, systemdStates } from "../src/services/states.js";

const svc = (name: string, extra: Partial<ServiceSpec> = {}): ServiceSpec => ({ name, mode: "service", exec: ["true"], enable: true, ...extra });
const specs = (...list: ServiceSpec[]) => new Map(list.map((s) => [s.name, s]));

test("start plan: requires pull units in, after only orders, targets are ignored, dependencies come first", () => {
  const all = specs(svc("web", { after: ["db", "cache", "network.target"], requires: ["db"] }), svc("db", { after: ["migrate"] }), svc("migrate"), svc("cache"));
  const plan = startPlan(["web"], all);
  assert.deepEqual(plan.order, ["db", "web"], "cache and migrate are not required, so they do not start");
  assert.deepEqual(plan.waitsFor.get("web"), ["db"]);
  const both = startPlan(["web", "migrate", "cache"], all);
  assert.ok(both.order.indexOf("migrate") < both.order.indexOf("db") && both.order.indexOf("db") < both.order.indexOf("web"));
  assert.ok(both.order.indexOf("cache") < both.order.indexOf("web"));
  assert.deepEqual(startPlan(["x"], specs(svc("x", { requires: ["ghost", "multi-user.target"] }))).missing.get("x"), ["ghost"]);
  assert.deepEqual(requiredBy("db", all.values()), ["web"]);
});

test("start plan: a cycle is cut once and every unit still starts", () => {
  const plan = startPlan(["a"], specs(svc("a", { requires: ["b"] }), svc("b", { requires: ["c"] }), svc("c", { after: ["a"], requires: ["a"] })));
  assert.deepEqual([...plan.order].sort(), ["a", "b", "c"]);
  assert.equal(plan.cut.length, 1);
  const position = new Map(plan.order.map((n, i) => [n, i]));
  for (const [unit, deps] of plan.waitsFor) for (const d of deps) assert.ok(position.get(d)! < position.get(unit)!, `${unit} waits for ${d}, which starts earlier`);
});

test("restart policy follows systemd's Restart= table", () => {
  const ends = { ok: { kind: "exit", code: 0 }, fail: { kind: "exit", code: 2 }, term: { kind: "signal", signal: "SIGTERM" }, kill: { kind: "signal", signal: "SIGKILL" }, timeout: { kind: "timeout" } } as const;
  const table: Record<string, Record<keyof typeof ends, boolean>> = {
    no: { ok: false, fail: false, term: false, kill: false, timeout: false },
    always: { ok: true, fail: true, term: true, kill: true, timeout: true },
    "on-failure": { ok: false, fail: true, term: false, kill: true, timeout: true },
    "on-abnormal": { ok: false, fail: false, term: false, kill: true, timeout: true },
  };
  for (const [policy, row] of Object.entries(table)) {
    for (const [end, expected] of Object.entries(row)) assert.equal(shouldRestart({ policy: policy as "no" }, ends[end as keyof typeof ends]), expected, `${policy} after ${end}`);
  }
  assert.equal(shouldRestart(undefined, ends.fail), false, "no policy: no restarts");
  assert.deepEqual([runResult(ends.ok), runResult(ends.fail), runResult(ends.kill), runResult(ends.timeout)], ["success", "exit-code", "signal", "timeout"]);
});

test("restart delay and start limit bound a crash loop", () => {
  assert.equal(restartDelayMs({ policy: "always", restartSec: 0 }), MIN_RESTART_DELAY_MS);
  assert.equal(restartDelayMs({ policy: "always", restartSec: 2 }), 2000);
  assert.equal(restartDelayMs({ policy: "always", restartSec: 0, startLimitIntervalSec: 0 }), UNLIMITED_RESTART_DELAY_MS, "no start limit: once a second at most");
  const limiter = new StartLimiter({ policy: "always", startLimitBurst: 3, startLimitIntervalSec: 10 });
  assert.deepEqual([0, 1, 2, 3].map((t) => limiter.allow(t * 1000)), [true, true, true, false]);
  assert.equal(limiter.allow(10_500), true, "the first start left the window");
  const defaults = new StartLimiter(undefined);
  assert.deepEqual(Array.from({ length: 6 }, () => defaults.allow(0)), [true, true, true, true, true, false], "systemd's 5 in 10 s");
  limiter.reset();
  assert.equal(limiter.allow(10_600), true);
});

test("states map onto systemd's activeState/subState pairs", () => {
  assert.deepEqual(systemdStates("running"), { activeState: "active", subState: "running" });
  assert.deepEqual(systemdStates("inactive"), { activeState: "inactive", subState: "dead" });
  assert.deepEqual(systemdStates("failed"), { activeState: "failed", subState: "failed" });
  assert.deepEqual(systemdStates("activating"), { activeState: "activating", subState: "start" });
  assert.deepEqual(systemdStates("exited"), { activeState: "active", subState: "exited" });
  assert.deepEqual(systemdStates("auto-restart"), { activeState: "activating", subState: "auto-restart" });
  assert.equal(isSettled("auto-restart"), false);
  assert.equal(isSettled("exited"), true);
});

test("line splitter: newlines, CRLF, no newline at all, and lines past the limit", () => {
  const lines: string[] = [];
  const split = new LineSplitter(4, (l) => lines.push(l.toString()));
  split.push(Buffer.from("ab\r\ncd"));
  split.push(Buffer.from("\n\nabcdefghij"));
  split.push(Buffer.from("k"));
  split.flush();
  assert.deepEqual(lines, ["ab", "cd", "", "abcd", "efgh", "ijk"]);
});

const isRoot = process.getuid?.() === 0;

test("a log file that fails (a full disk) drops lines instead of stalling the service, then is opened again", { skip: !isRoot && "mounts a tiny tmpfs: needs root" }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "capsule-svc-full-"));
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "capsule-test", dir]);
  try {
    const file = path.join(dir, "s.log");
    const reopenAfterMs = 200;
    const writer = new ServiceLogWriter(file, LOG_FILE_MAX_BYTES, reopenAfterMs);
    const filler = path.join(dir, "filler");
    assert.throws(() => fs.writeFileSync(filler, Buffer.alloc(1024 * 1024)), /ENOSPC/);
    // A flood outruns the file until write() asks the caller to pause its pipes...
    let lagging = false;
    for (let i = 0; i < 1000 && !lagging; i++) lagging = !writer.write("stdout", Buffer.alloc(1000, 0x61));
    assert.ok(lagging, "the writer asked for a pause");
    // ...and the pause ends although the file failed (ENOSPC destroyed its stream: no drain ever).
    const resumed = await Promise.race([new Promise<boolean>((r) => writer.onDrain(() => r(true))), new Promise<boolean>((r) => setTimeout(() => r(false), 2000))]);
    assert.ok(resumed, "the service's pipes are resumed");
    assert.equal(writer.write("stdout", Buffer.from("lost")), true, "lines are dropped, not queued");
    assert.ok(writer.dropped > 0);
    fs.rmSync(filler);
    await new Promise((r) => setTimeout(r, reopenAfterMs + 50));
    writer.write("stdout", Buffer.from("back"), 9_000);
    writer.close();
    await new Promise((r) => setTimeout(r, 50));
    const [note, back] = await readServiceLog(file, { lines: 2 });
    assert.equal(note?.stream, "supervisor");
    assert.match(note?.message ?? "", /^\d+ log lines were dropped: the log file failed \(ENOSPC\)$/);
    assert.deepEqual(back, { timeMs: 9_000, stream: "stdout", message: "back" });
  } finally {
    execFileSync("umount", [dir]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a log file that cannot be opened drops lines and never throws into the supervisor", () => {
  const writer = new ServiceLogWriter(path.join(os.tmpdir(), "capsule-no-such-dir", "x", "s.log"));
  assert.equal(writer.write("supervisor", Buffer.from("Started")), true);
  let called = false;
  writer.onDrain(() => (called = true));
  assert.ok(called, "nothing to wait for");
  assert.equal(writer.dropped, 1);
});

test("log writer rotates at its byte limit into one older file; reads take lines, since and hostile bytes", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "capsule-svc-log-"));
  try {
    const file = path.join(dir, "s.log");
    const writer = new ServiceLogWriter(file, 1000);
    for (let i = 0; i < 100; i++) writer.write(i % 2 ? "stderr" : "stdout", Buffer.from(`line ${i}`), 1_000 + i);
    writer.write("stdout", Buffer.from([0x61, 0x00, 0xff, 0x62]), 5_000);
    writer.close();
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(fs.readdirSync(dir).sort(), ["s.log", "s.log.1"]);
    assert.ok(fs.statSync(file).size <= 1000 && fs.statSync(`${file}.1`).size <= 1000);
    const last = await readServiceLog(file, { lines: 3 });
    assert.deepEqual(last.map((e) => e.message), ["line 98", "line 99", "a\uFFFD\uFFFDb"]);
    assert.equal(last[1]?.stream, "stderr");
    const since = await readServiceLog(file, { sinceMs: 1_095 });
    assert.deepEqual(since.map((e) => e.timeMs), [1_095, 1_096, 1_097, 1_098, 1_099, 5_000]);
    assert.equal(parseLogLine(Buffer.from("garbage line")), undefined);
    fs.appendFileSync(file, "not a log line\n");
    assert.equal((await readServiceLog(file, { lines: 1 }))[0]?.timeMs, 5_000, "a foreign line is skipped");
    assert.ok(LOG_FILE_MAX_BYTES >= 1000);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** The service messages of the agent protocol, played by an attacker on either side. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { MAX_SERVICE_LOG_LINES, MAX_SERVICE_LOG_TIME_MS, ProtocolError, SERVICE_LIMITS, parseReply, parseRequest, parseServiceSpec } from "@capsule/agent-protocol";

const good = { name: "web", mode: "service", exec: ["node server.js"], enable: true };

function refused(fn: () => unknown, reason: RegExp, label: string): void {
  assert.throws(fn, (err: unknown) => err instanceof ProtocolError && reason.test(err.message), label);
}

test("a full definition comes back field for field; unit names are normalised", () => {
  const full = {
    ...good,
    name: "web.service",
    env: { PORT: "3000" },
    user: "claude",
    group: "staff",
    workdir: "/srv/app/",
    after: ["db.service", "network.target"],
    requires: ["db"],
    onFailure: ["alert"],
    wantedBy: ["multi-user.target"],
    timeoutSec: 1.5,
    deleteAfterSuccess: false,
    remainAfterExit: true,
    restart: { policy: "on-failure", restartSec: 2, startLimitBurst: 3, startLimitIntervalSec: 30 },
    extra: "dropped",
  };
  const spec = parseServiceSpec(full);
  assert.equal(spec.name, "web");
  assert.equal(spec.workdir, "/srv/app");
  assert.deepEqual(spec.after, ["db", "network.target"]);
  assert.ok(!("extra" in spec));
  const req = parseRequest({ op: "svc.define", services: [full], replace: false, start: true });
  assert.deepEqual(req, { op: "svc.define", services: [spec], replace: false, start: true });
});

test("service names are file names: path characters, hidden names, and oversize are refused", () => {
  for (const name of ["../etc/passwd", "a/b", "..", ".", ".x", "-rf", "", "a\0b", "a b", "x".repeat(129), "é", "x.target", "a.service.service", "/abs"]) {
    refused(() => parseRequest({ op: "svc.status", name }), /name/, JSON.stringify(name));
    refused(() => parseServiceSpec({ ...good, name }), /name/, `spec ${JSON.stringify(name)}`);
  }
  refused(() => parseServiceSpec({ ...good, after: ["../x"] }), /after/, "a dependency with a path");
  refused(() => parseServiceSpec({ ...good, requires: ["ok", 7] }), /requires/, "a non-string dependency");
});

test("oversized and mistyped fields are refused on the way in", () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ exec: [] }, /exec/],
    [{ exec: ["  "] }, /exec/],
    [{ exec: Array(SERVICE_LIMITS.execCommands + 1).fill("true") }, /exec/],
    [{ exec: ["x".repeat(SERVICE_LIMITS.commandBytes + 1)] }, /exec/],
    [{ exec: "true" }, /exec/],
    [{ mode: "forking" }, /mode/],
    [{ enable: "yes" }, /enable/],
    [{ user: "root;rm" }, /user/],
    [{ group: "../g" }, /group/],
    [{ workdir: "relative" }, /workdir/],
    [{ env: { "A=B": "x" } }, /environment/],
    [{ env: Object.fromEntries(Array.from({ length: SERVICE_LIMITS.envVars + 1 }, (_, i) => [`V${i}`, "x"])) }, /env/],
    [{ env: { BIG: "x".repeat(SERVICE_LIMITS.envBytes + 1) } }, /env/],
    [{ after: Array(SERVICE_LIMITS.dependencies + 1).fill("a") }, /after/],
    [{ timeoutSec: -1 }, /timeoutSec/],
    [{ timeoutSec: SERVICE_LIMITS.seconds + 1 }, /timeoutSec/],
    [{ restart: { policy: "sometimes" } }, /policy/],
    [{ restart: { policy: "always", startLimitBurst: 1.5 } }, /startLimitBurst/],
    [{ restart: "always" }, /restart/],
    [{ watchdogSec: 1e-9 }, /watchdogSec/],
    [{ watchdogSec: -1 }, /watchdogSec/],
  ];
  for (const [fields, reason] of cases) refused(() => parseServiceSpec({ ...good, ...fields }), reason, JSON.stringify(fields).slice(0, 80));
  refused(() => parseRequest({ op: "svc.define", services: [], replace: false, start: true }), /services/, "no services");
  refused(() => parseRequest({ op: "svc.define", services: [good, good], replace: false, start: true }), /twice/, "a name twice");
  refused(() => parseRequest({ op: "svc.define", services: Array.from({ length: SERVICE_LIMITS.perDefine + 1 }, (_, i) => ({ ...good, name: `s${i}` })), replace: false, start: true }), /services/, "too many");
  refused(() => parseRequest({ op: "svc.define", services: [good], start: true }), /replace/, "replace missing");
  refused(() => parseRequest({ op: "svc.control", name: "web", action: "kill" }), /action/, "an unknown action");
  refused(() => parseRequest({ op: "svc.logs", name: "web", lines: MAX_SERVICE_LOG_LINES + 1 }), /lines/, "too many lines");
  refused(() => parseRequest({ op: "svc.nuke", name: "web" }), /unknown op/, "an unknown svc op");
});

test("a guest's service replies are checked field by field", () => {
  const status = { name: "web", user: "root", enabled: true, activeState: "active", subState: "running", result: "success", pid: 12, restarts: 0 };
  assert.deepEqual(parseReply({ type: "service", status }), { type: "service", status });
  assert.deepEqual(parseReply({ type: "services", services: [{ ...status, pid: null }] }), { type: "services", services: [{ ...status, pid: null }] });
  const bad: Array<[unknown, RegExp]> = [
    [{ type: "service", status: { ...status, activeState: "exploded" } }, /activeState/],
    [{ type: "service", status: { ...status, name: "../x" } }, /name/],
    [{ type: "service", status: { ...status, pid: -1 } }, /pid/],
    [{ type: "service", status: { ...status, restarts: "many" } }, /restarts/],
    [{ type: "services", services: {} }, /services/],
    [{ type: "logs", entries: [{ timeMs: 1, stream: "stdin", message: "x" }] }, /stream/],
    [{ type: "logs", entries: [{ timeMs: 1, stream: "stdout", message: "a\0b" }] }, /NUL/],
    // Past the last Date, the host's toISOString() would throw and every log read would 500.
    [{ type: "logs", entries: [{ timeMs: MAX_SERVICE_LOG_TIME_MS + 1, stream: "stdout", message: "x" }] }, /timeMs/],
    [{ type: "logs", entries: Array(MAX_SERVICE_LOG_LINES + 1).fill({ timeMs: 1, stream: "stdout", message: "x" }) }, /entries/],
    [{ type: "service.spec", service: { ...good, exec: [] } }, /exec/],
  ];
  for (const [reply, reason] of bad) refused(() => parseReply(reply), reason, JSON.stringify(reply).slice(0, 80));
  const latest = parseReply({ type: "logs", entries: [{ timeMs: MAX_SERVICE_LOG_TIME_MS, stream: "stdout", message: "x" }] });
  assert.ok(latest.type === "logs" && new Date(latest.entries[0]!.timeMs).toISOString().startsWith("+275760"), "the last Date is still one");
});

import assert from "node:assert/strict";
import os from "node:os";
import { test } from "node:test";
import {
  AGENT_ERROR_CODES,
  AGENT_FEATURES,
  FrameDecoder,
  FrameType,
  MAX_CKPT_DEAF_MS,
  ProtocolError,
  SIGNALS,
  SIGNAL_NAMES,
  encodeFrame,
  isSignalName,
  parseExecControl,
  parseJson,
  parsePtyControl,
  parseReply,
  parseRequest,
  signalName,
  signalNumber,
} from "@capsule/agent-protocol";

/** Asserts `fn` throws a ProtocolError whose message matches `reason`. */
function rejects(fn: () => unknown, reason: RegExp, label: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ProtocolError, `${label}: threw ${String(err)}, not a ProtocolError`);
    assert.match(err.message, reason, label);
    return true;
  });
}

const session = { sessionId: "s1", user: "root", command: ["/bin/bash", "-i"], cols: 80, rows: 24, pid: 7, running: true, exitCode: null, createdAt: "2026-01-01T00:00:00.000Z", attached: 1 };
const stat = { kind: "file", size: 3, mode: 0o644, uid: 0, gid: 0, mtimeMs: 1.5 };

test("every reply the agent sends is accepted and comes back field for field", () => {
  const good = [
    { type: "error", code: "FILE_NOT_FOUND", message: "no such file" },
    { type: "version", version: "0.1.0", protocol: 1, pid: 12 },
    { type: "version", version: "0.1.0", protocol: 1, pid: 12, features: ["svc.notify"] },
    { type: "exit", code: 0, signal: null },
    { type: "exit", code: null, signal: "SIGKILL", timedOut: true },
    { type: "started", pid: 99 },
    { type: "session", session },
    { type: "sessions", sessions: [session, { ...session, sessionId: "s2", running: false, exitCode: 130 }] },
    { type: "sessions", sessions: [] },
    { type: "closed", sessionId: "s1", exitCode: null },
    { type: "stat", stat },
    { type: "list", entries: [{ name: "a", kind: "directory" }, { name: "b", kind: "symlink" }] },
    { type: "exists", exists: false },
    { type: "ok" },
    { type: "ok", size: 1024 },
  ];
  for (const reply of good) assert.deepEqual(parseReply(reply), reply);
  for (const code of AGENT_ERROR_CODES) assert.equal(parseReply({ type: "error", code, message: "" }).type, "error");
});

test("fields a reply does not define are dropped, not passed on", () => {
  assert.deepEqual(parseReply({ type: "started", pid: 1, __proto__: { evil: true }, extra: "x" }), { type: "started", pid: 1 });
  assert.deepEqual(parseReply({ type: "stat", stat: { ...stat, secret: 1 } }), { type: "stat", stat });
  // Features this host does not know mean nothing to it; each known one is kept once.
  assert.deepEqual(parseReply({ type: "version", version: "1", protocol: 1, pid: 1, features: ["svc.notify", "x".repeat(5000), "svc.notify"] }), { type: "version", version: "1", protocol: 1, pid: 1, features: ["svc.notify"] });
});

test("every malformed reply is rejected with a reason", () => {
  const bad: Array<[unknown, RegExp]> = [
    [null, /must be a JSON object/],
    [[], /must be a JSON object/],
    ["exit", /must be a JSON object/],
    [42, /must be a JSON object/],
    [{}, /unknown reply type undefined/],
    [{ type: "launch" }, /unknown reply type "launch"/],
    [{ type: 1 }, /unknown reply type 1/],
    [{ type: "error", code: "NOPE", message: "x" }, /"code" must be one of/],
    [{ type: "error", code: "INTERNAL" }, /"message" must be a string/],
    [{ type: "version", version: 1, protocol: 1, pid: 1 }, /"version" must be a string/],
    [{ type: "version", version: "1", protocol: "1", pid: 1 }, /"protocol" must be an integer/],
    [{ type: "version", version: "1", protocol: 1, pid: 1, features: "svc.notify" }, /"features" must be an array/],
    [{ type: "version", version: "1", protocol: 1, pid: 1, features: [1] }, /"features" must be an array of strings/],
    [{ type: "exit", code: "0", signal: null }, /"code" must be an integer or null/],
    [{ type: "exit", code: 1.5, signal: null }, /"code" must be an integer or null/],
    [{ type: "exit", code: 0 }, /"signal" must be a signal name or null/],
    [{ type: "exit", code: null, signal: "x".repeat(100) }, /"signal" must be a signal name or null/],
    [{ type: "exit", code: 0, signal: null, timedOut: "yes" }, /"timedOut" must be a boolean/],
    [{ type: "started" }, /"pid" must be an integer/],
    [{ type: "started", pid: -1 }, /"pid" must be an integer/],
    [{ type: "started", pid: 2 ** 60 }, /"pid" must be an integer/],
    [{ type: "started", pid: Number.NaN }, /"pid" must be an integer/],
    [{ type: "session" }, /a PTY session must be a JSON object/],
    [{ type: "session", session: { ...session, command: "bash" } }, /"command" must be an array/],
    [{ type: "session", session: { ...session, command: [1] } }, /"command" must be an array of strings/],
    [{ type: "session", session: { ...session, cols: 1e6 } }, /"cols" must be an integer from 0 to 65535/],
    [{ type: "session", session: { ...session, running: 1 } }, /"running" must be a boolean/],
    [{ type: "session", session: { ...session, sessionId: "a\0b" } }, /must not contain NUL/],
    [{ type: "sessions", sessions: {} }, /"sessions" must be an array/],
    [{ type: "sessions", sessions: [null] }, /a PTY session must be a JSON object/],
    [{ type: "closed", sessionId: "s", exitCode: "0" }, /"exitCode" must be an integer or null/],
    [{ type: "stat", stat: { ...stat, kind: "fifo" } }, /"kind" must be one of/],
    [{ type: "stat", stat: { ...stat, size: -1 } }, /"size" must be an integer/],
    [{ type: "stat", stat: { ...stat, mode: 0o10000 } }, /"mode" must be an integer from 0 to 4095/],
    [{ type: "stat", stat: { ...stat, mtimeMs: "now" } }, /"mtimeMs" must be a number/],
    [{ type: "list", entries: [{ name: "a" }] }, /"kind" must be one of/],
    [{ type: "list", entries: "a,b" }, /"entries" must be an array/],
    [{ type: "exists", exists: "true" }, /"exists" must be a boolean/],
    [{ type: "ok", size: "3" }, /"size" must be an integer/],
  ];
  for (const [raw, reason] of bad) rejects(() => parseReply(raw), reason, JSON.stringify(raw) ?? String(raw));
});

test("bad JSON is a ProtocolError naming what was being read", () => {
  for (const text of ["{bad", "", "nul", "{\"a\":1,}", "\u0000"]) rejects(() => parseJson(Buffer.from(text), "a reply"), /a reply is not valid JSON/, JSON.stringify(text));
  assert.equal(parseJson(Buffer.from("null"), "x"), null);
  rejects(() => parseReply(parseJson(Buffer.from("null"), "a reply")), /must be a JSON object/, "null");
});

test("requests: good ones come back normalised, bad ones are rejected with a reason", () => {
  assert.deepEqual(parseRequest({ op: "version" }), { op: "version" });
  assert.deepEqual(parseRequest({ op: "fs.stat", path: "/a//b/../c/", user: "alice" }), { op: "fs.stat", path: "/a/c", user: "alice" });
  const exec = parseRequest({ op: "exec", command: "echo hi", env: { A: "1" }, timeoutMs: 500, junk: 1 });
  assert.deepEqual(JSON.parse(JSON.stringify(exec)), { op: "exec", command: "echo hi", env: { A: "1" }, timeoutMs: 500 });
  const bad: Array<[unknown, RegExp]> = [
    [null, /the request must be a JSON object/],
    [{ op: "launch-missiles" }, /unknown op "launch-missiles"/],
    [{ op: "exec" }, /"command" must be a string/],
    [{ op: "exec", command: "a\0b" }, /must not contain NUL/],
    [{ op: "exec", command: "x", env: { "A=B": "1" } }, /bad environment variable name/],
    [{ op: "exec", command: "x", env: { A: 1 } }, /environment variable A must be a string/],
    [{ op: "exec", command: "x", timeoutMs: 2 ** 31 }, /"timeoutMs" must be an integer/],
    [{ op: "exec", command: "x", cwd: "relative" }, /"cwd" must be an absolute path/],
    [{ op: "pty.open", cols: 0, rows: 10 }, /"cols" must be a positive integer/],
    [{ op: "pty.open", cols: 80, rows: 24, command: [] }, /"command" must be a non-empty array of strings/],
    [{ op: "pty.open", cols: 80, rows: 24, command: "bash" }, /"command" must be a non-empty array of strings/],
    [{ op: "fs.write", path: "/f", mode: 0o17777 }, /"mode" must be an integer from 0 to 4095/],
    [{ op: "fs.mkdir", path: "/d", recursive: "yes" }, /"recursive" must be a boolean/],
  ];
  for (const [raw, reason] of bad) rejects(() => parseRequest(raw), reason, JSON.stringify(raw));
});

test("controls: signals only from the one table, resizes within 16 bits", () => {
  for (const name of SIGNAL_NAMES) assert.deepEqual(parseExecControl(Buffer.from(JSON.stringify({ type: "signal", signal: name }))), { type: "signal", signal: name });
  assert.deepEqual(parsePtyControl(Buffer.from('{"type":"resize","cols":100,"rows":30}')), { type: "resize", cols: 100, rows: 30 });
  rejects(() => parseExecControl(Buffer.from('{"type":"signal","signal":"SIGSEGV"}')), /"signal" must be one of SIGHUP, SIGINT, SIGKILL, SIGTERM/, "SIGSEGV");
  rejects(() => parseExecControl(Buffer.from('{"type":"signal","signal":"toString"}')), /"signal" must be one of/, "toString");
  rejects(() => parseExecControl(Buffer.from('{"type":"resize","cols":1,"rows":1}')), /unknown exec control "resize"/, "resize on exec");
  rejects(() => parsePtyControl(Buffer.from('{"type":"resize","cols":70000,"rows":1}')), /"cols" must be an integer from 0 to 65535/, "huge resize");
  rejects(() => parsePtyControl(Buffer.from("{")), /a control message is not valid JSON/, "bad json");
});

test("the signal table agrees with the runtime's numbers", () => {
  for (const [name, num] of Object.entries(SIGNALS)) {
    assert.equal(os.constants.signals[name as keyof typeof os.constants.signals], num, name);
    assert.equal(signalName(num), name);
    assert.equal(signalNumber(name), num);
    assert.ok(isSignalName(name));
  }
  assert.equal(signalName(11), "SIGSEGV");
  assert.equal(signalName(0), undefined);
  assert.equal(signalNumber("SIGNOPE"), undefined);
  assert.equal(signalNumber("constructor"), undefined);
  assert.ok(!isSignalName("SIGSEGV"));
  assert.ok(!isSignalName("hasOwnProperty"));
});

test("the frame decoder throws ProtocolError for unknown types and oversized frames", () => {
  rejects(() => new FrameDecoder().push(Buffer.from([42, 0, 0, 0, 0])), /unknown frame type 42/, "type 42");
  rejects(() => new FrameDecoder().push(Buffer.from([0, 0, 0, 0, 0])), /unknown frame type 0/, "type 0");
  rejects(() => new FrameDecoder().push(Buffer.from([FrameType.Json, 0xff, 0xff, 0xff, 0xff])), /exceeds the 4194304 byte limit/, "huge json");
  rejects(() => new FrameDecoder().push(Buffer.from([FrameType.Stdout, 0x01, 0, 0, 1])), /exceeds the 1048576 byte limit/, "huge stdout");
  const d = new FrameDecoder();
  assert.deepEqual(d.push(encodeFrame(FrameType.Stdout, "abc").subarray(0, 6)), []);
  assert.equal(d.pending, 6);
});

test("PTY slugs, numbers and replaceOnExit: what a guest replies and what a client asks are checked both ways", () => {
  // A hostile guest's session replies.
  const named = { ...session, number: 3, slug: "main-1", replaceOnExit: true };
  assert.deepEqual(parseReply({ type: "session", session: named, created: false }), { type: "session", session: named, created: false });
  for (const [reply, reason] of [
    [{ type: "session", session: { ...session, slug: "Main" } }, /"slug" must be 1 to 63 lower-case letters/],
    [{ type: "session", session: { ...session, slug: "123" } }, /"slug" must be/],
    [{ type: "session", session: { ...session, slug: "a".repeat(64) } }, /"slug" must be/],
    [{ type: "session", session: { ...session, slug: "../etc" } }, /"slug" must be/],
    [{ type: "session", session: { ...session, number: -1 } }, /"number" must be an integer/],
    [{ type: "session", session: { ...session, number: 1.5 } }, /"number" must be an integer/],
    [{ type: "session", session: { ...session, replaceOnExit: "yes" } }, /"replaceOnExit" must be a boolean/],
    [{ type: "session", session, created: 1 }, /"created" must be a boolean/],
  ] as const) {
    rejects(() => parseReply(reply), reason, JSON.stringify(reply));
  }
  // A hostile API client's pty.open, as the server forwards it.
  const open = { op: "pty.open", cols: 80, rows: 24 };
  assert.equal((parseRequest({ ...open, slug: "dev", replaceOnExit: true }) as { slug?: string }).slug, "dev");
  for (const slug of ["", "-a", "a-", "a--b", "A", "42", "x".repeat(64), "a b", "a/b"]) {
    rejects(() => parseRequest({ ...open, slug }), /"slug" must be/, `slug ${JSON.stringify(slug)}`);
  }
  rejects(() => parseRequest({ ...open, replaceOnExit: "true" }), /"replaceOnExit" must be a boolean/, "replaceOnExit string");
});

test("ckpt.prepare: deafMs is optional, from 1 ms to MAX_CKPT_DEAF_MS; its feature is listed", () => {
  assert.deepEqual(JSON.parse(JSON.stringify(parseRequest({ op: "ckpt.prepare" }))), { op: "ckpt.prepare" });
  assert.deepEqual(parseRequest({ op: "ckpt.prepare", deafMs: MAX_CKPT_DEAF_MS, junk: 1 }), { op: "ckpt.prepare", deafMs: MAX_CKPT_DEAF_MS });
  for (const deafMs of [0, -1, 1.5, MAX_CKPT_DEAF_MS + 1, "10", null]) {
    rejects(() => parseRequest({ op: "ckpt.prepare", deafMs }), /"deafMs" must be/, `deafMs ${JSON.stringify(deafMs)}`);
  }
  const reply = parseReply({ type: "version", version: "0.1.0", protocol: 1, pid: 2, features: [AGENT_FEATURES.checkpoint, "from-the-future"] });
  assert.deepEqual(reply.type === "version" && reply.features, ["ckpt.prepare"]);
});

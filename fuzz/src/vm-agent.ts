/**
 * The fuzzing "agent": a program root runs inside a VM, on the agent bundle's own Node, that
 * takes over `/.capsule-run/agent.sock` (as in packages/engine/test-support/hostile-agent.ts) and
 * answers each host connection with frames from a seeded PRNG: a valid reply for the request's
 * op, then mutated (bit flips, truncation, lying or huge lengths, wrong types, unknown types and
 * frame types, extra fields, deep nesting, invalid UTF-8, duplicates, reordering), delivered
 * whole, in pieces or slowly, and ended cleanly, by a reset, by lingering or by a stall.
 *
 * Its one control: an exec of `__capsule_fuzz_report__` gets a valid reply whose stdout is
 * `{"frames","conns","errors"}`, the frames sent so far (the fuzzer's cases).
 */
export const FUZZ_REPORT_COMMAND = "__capsule_fuzz_report__";

export const VM_AGENT_SOURCE = String.raw`
"use strict";
const fs = require("fs");
const net = require("net");
const SOCK = "/.capsule-run/agent.sock";
let s = Number(process.env.FUZZ_SEED || 1) >>> 0;
const rnd = () => {
  let t = (s = (s + 0x6d2b79f5) >>> 0);
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const int = (n) => Math.floor(rnd() * n);
const chance = (p) => rnd() < p;
const pick = (a) => a[int(a.length)];
const stats = { frames: 0, conns: 0, errors: 0, mutations: {} };
const CODES = ["BAD_REQUEST", "USER_NOT_FOUND", "FILE_NOT_FOUND", "PERMISSION_DENIED", "IS_A_DIRECTORY", "NOT_A_DIRECTORY", "ALREADY_EXISTS", "DIRECTORY_NOT_EMPTY", "SESSION_NOT_FOUND", "SESSION_USER_MISMATCH", "SPAWN_FAILED", "RESOURCE_EXHAUSTED", "INTERNAL", "NOPE", ""];
const head = (type, len) => { const h = Buffer.alloc(5); h[0] = type & 255; h.writeUInt32BE(len >>> 0, 1); return h; };
const frame = (type, payload) => { const b = Buffer.isBuffer(payload) ? payload : Buffer.from(String(payload)); return Buffer.concat([head(type, b.length), b]); };
const J = (v) => frame(1, JSON.stringify(v));
const data = (t) => frame(t || pick([3, 3, 4]), Buffer.alloc(int(48), 97 + int(26)));
const stat = (kind) => ({ kind: kind || "file", size: int(100), mode: 420, uid: 0, gid: 0, mtimeMs: Date.now() });
const session = () => ({ sessionId: "pty-" + int(3), user: "root", command: ["/bin/sh"], cols: 80, rows: 24, pid: 7, running: true, exitCode: null, createdAt: new Date().toISOString(), attached: 1 });

function valid(req) {
  const n = int(chance(0.3) ? 300 : 24);
  const many = (t) => Array.from({ length: n }, () => data(t));
  if (chance(0.12) && req.op !== "version") return [J({ type: "error", code: pick(CODES.slice(0, 13)), message: "fuzz" })];
  switch (req.op) {
    case "version": return [J({ type: "version", version: "0.1.0", protocol: 1, pid: 1 })];
    case "exec": return [J({ type: "started", pid: 100 + int(1000) }), ...many(), J({ type: "exit", code: int(3), signal: null })];
    case "pty.open": case "pty.attach": return [J({ type: "session", session: session() }), ...many(3), J({ type: "exit", code: 0, signal: null })];
    case "pty.list": return [J({ type: "sessions", sessions: Array.from({ length: int(3) }, session) })];
    case "pty.close": return [J({ type: "closed", sessionId: String(req.sessionId), exitCode: 0 })];
    case "fs.read": { const d = many(3); const size = d.reduce((a, f) => a + f.length - 5, 0); return [J({ type: "stat", stat: { ...stat(), size } }), ...d, frame(5, "")]; }
    case "fs.write": return [J({ type: "ok", size: int(100) })];
    case "fs.stat": return [J({ type: "stat", stat: stat(pick(["file", "directory", "symlink", "other"])) })];
    case "fs.list": return [J({ type: "list", entries: Array.from({ length: int(5) }, (_, i) => ({ name: "e" + i, kind: pick(["file", "directory"]) })) })];
    case "fs.exists": return [J({ type: "exists", exists: chance(0.5) })];
    default: return [J({ type: "ok" })];
  }
}

const deep = (d) => "[".repeat(d) + "]".repeat(d);
const WEIRD = ["1", null, [], {}, -1, 1.5, true, "x".repeat(70000), -0, 1e21, 4294967296, { "__proto__": { polluted: 1 } }];
const MUTATIONS = {
  flip(fr, i) { const b = Buffer.from(fr[i]); for (let k = 1 + int(8); k > 0; k--) b[int(b.length)] ^= 1 << int(8); fr[i] = b; },
  truncate(fr, i, plan) { fr[i] = fr[i].subarray(0, int(fr[i].length)); fr.length = i + 1; plan.cut = true; },
  lieShort(fr, i) { const b = Buffer.from(fr[i]); const len = b.readUInt32BE(1); b.writeUInt32BE(Math.max(0, len - 1 - int(8)), 1); fr[i] = b; },
  lieLong(fr, i, plan) { const b = Buffer.from(fr[i]); b.writeUInt32BE(b.readUInt32BE(1) + 1 + int(1000), 1); fr[i] = b; plan.cut = true; },
  huge(fr, i, plan) { const b = Buffer.from(fr[i].subarray(0, 5)); b.writeUInt32BE(pick([0xffffffff, 4 * 1024 * 1024 + 1, 1024 * 1024 + 1, 0x80000000]), 1); fr[i] = b; fr.length = i + 1; plan.cut = true; },
  wrongTypes(fr, i) {
    let v; try { v = JSON.parse(fr[i].subarray(5).toString()); } catch { return; }
    if (!v || typeof v !== "object") return;
    const walk = (o, depth) => { const ks = Object.keys(o); if (!ks.length) return; const k = pick(ks); if (depth < 3 && o[k] && typeof o[k] === "object" && chance(0.5)) walk(o[k], depth + 1); else o[k] = pick(WEIRD); };
    walk(v, 0); fr[i] = J(v);
  },
  unknownType(fr, i) { fr.splice(i, 0, J({ type: pick(["launch-missiles", "", "__proto__", "constructor", 42, null, "STARTED", "exit "]) })); },
  unknownFrame(fr, i) { fr.splice(i, 0, frame(pick([0, 6, 7, 42, 255]), "x")); },
  extraFields(fr, i) {
    let v; try { v = JSON.parse(fr[i].subarray(5).toString()); } catch { return; }
    if (!v || typeof v !== "object") return;
    fr[i] = frame(1, JSON.stringify({ ...v, extra: pick(WEIRD), toString: 1, constructor: "x" }).replace("{", '{"__proto__":{"polluted":true},'));
  },
  deep(fr, i) { const d = pick([64, 5000, 200000, 1500000]); fr.splice(i, 0, frame(1, chance(0.5) ? deep(d) : '{"type":"started","pid":1,"x":' + deep(d) + "}")); },
  badUtf8(fr, i) { fr.splice(i, 0, frame(1, Buffer.concat([Buffer.from('{"type":"'), Buffer.from(pick([[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80]])), Buffer.from('","pid":1}')]))); },
  notObject(fr, i) { fr.splice(i, 0, frame(1, pick(["null", "1", "[]", '"s"', "true", "", " ", "{", "{}", '{"type":null}']))); },
  dup(fr, i) { fr.splice(i, 0, fr[i]); },
  swap(fr, i) { const j = int(fr.length); const t = fr[i]; fr[i] = fr[j]; fr[j] = t; },
  stdinFrame(fr, i) { fr.splice(i, 0, frame(2, "stdin from the guest")); },
  eofFrame(fr, i) { fr.splice(i, 0, frame(5, chance(0.5) ? "" : "eof with a body")); },
  bigData(fr, i) { if (chance(0.2)) fr.splice(i, 0, frame(pick([3, 4]), Buffer.alloc(1024 * 1024, 0x7a))); },
  bigString(fr, i) { if (chance(0.1)) fr.splice(i, 0, J({ type: "started", pid: 1, big: "y".repeat(3 * 1024 * 1024) })); },
};
const NAMES = Object.keys(MUTATIONS);

function plan(req) {
  const fr = valid(req);
  const p = { cut: false, names: [] };
  const k = chance(0.2) ? 0 : 1 + int(3);
  for (let m = 0; m < k && fr.length > 0 && !p.cut; m++) {
    const name = pick(NAMES);
    p.names.push(name);
    stats.mutations[name] = (stats.mutations[name] || 0) + 1;
    MUTATIONS[name](fr, int(fr.length), p);
  }
  return { fr, p };
}

function deliver(sock, fr, p) {
  stats.frames += fr.length;
  const bytes = Buffer.concat(fr);
  const how = pick(["all", "all", "all", "chunks", "slow"]);
  const ending = p.cut ? pick(["end", "end", "destroy", "stall"]) : pick(["end", "end", "end", "destroy", "linger"]);
  const finish = () => {
    if (sock.destroyed) return;
    if (ending === "end") sock.end();
    else if (ending === "destroy") sock.destroy();
    else setTimeout(() => sock.destroy(), ending === "stall" ? 40000 : 15000).unref();
  };
  if (how === "all" || bytes.length > 1 << 16) { sock.write(bytes); finish(); return; }
  let off = 0;
  const step = () => {
    if (sock.destroyed) return;
    if (off >= bytes.length) return finish();
    const n = 1 + int(how === "slow" ? 512 : 64);
    sock.write(bytes.subarray(off, off + n));
    off += n;
    if (how === "slow") setTimeout(step, int(20)); else setImmediate(step);
  };
  step();
}

const server = net.createServer((sock) => {
  stats.conns++;
  sock.on("error", () => { stats.errors++; });
  let buf = Buffer.alloc(0);
  let started = false;
  sock.on("data", (chunk) => {
    if (started) return;
    buf = Buffer.concat([buf, chunk]);
    if (buf.length < 5 || buf.length < 5 + buf.readUInt32BE(1)) { if (buf.length > 8 << 20) sock.destroy(); return; }
    started = true;
    let req = {};
    try { req = JSON.parse(buf.subarray(5, 5 + buf.readUInt32BE(1)).toString()) || {}; } catch {}
    buf = Buffer.alloc(0);
    if (req.op === "exec" && req.command === "${FUZZ_REPORT_COMMAND}") {
      sock.end(Buffer.concat([J({ type: "started", pid: 1 }), frame(3, JSON.stringify(stats)), J({ type: "exit", code: 0, signal: null })]));
      return;
    }
    try { const { fr, p } = plan(req); deliver(sock, fr, p); } catch (e) { stats.errors++; sock.destroy(); }
  });
});
process.on("uncaughtException", () => { stats.errors++; });
try { fs.unlinkSync(SOCK); } catch {}
server.listen(SOCK, () => fs.writeFileSync("/tmp/fuzz-agent.ready", String(process.pid)));
`;

/**
 * A hostile guest for tests: root inside a VM replaces the agent's socket with its own listener,
 * as the issue's author did with perl. It runs on the bundle's own Node inside the VM. Each
 * connection's first frame picks a misbehaviour: an exec's `command`, else the last path
 * component of a file op, else the op (`version`, `pty.open`, ...).
 */
import { AGENT_FEATURES, AGENT_PROTOCOL_VERSION } from "@capsule/agent-protocol";
import type { Engine } from "../src/index.js";

/** The misbehaviours the listener knows, by name. */
export const HOSTILE_CASES = [
  "bad-json",
  "null",
  "wrong-types",
  "unknown-reply",
  "unknown-frame",
  "stdin-frame",
  "oversized",
  "truncated-close",
  "truncated-stall",
  "data-frame-close",
  "data-frame-stall",
  "silent",
  "endless-stdout",
  "bad-stat",
  "data-first",
  "data-after-eof",
  "never-reads",
] as const;
export type HostileCase = (typeof HOSTILE_CASES)[number];

const LISTENER = String.raw`
const PROTOCOL = ${AGENT_PROTOCOL_VERSION};
const FEATURES = ${JSON.stringify(Object.values(AGENT_FEATURES))};
const fs = require("fs");
const net = require("net");
const SOCK = "/.capsule-run/agent.sock";
const frame = (type, payload) => {
  const body = Buffer.from(payload);
  const head = Buffer.alloc(5);
  head[0] = type;
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
};
const json = (v) => frame(1, typeof v === "string" ? v : JSON.stringify(v));
const partial = Buffer.concat([Buffer.from([1, 0, 0, 0, 100]), Buffer.from('{"type":')]);
const dataHead = Buffer.from([3, 0, 16, 0, 0]);
const cases = {
  "bad-json": (s) => s.end(json("{bad")),
  null: (s) => s.end(json("null")),
  "wrong-types": (s) => s.end(json({ type: "started", pid: "1" })),
  "unknown-reply": (s) => s.end(json({ type: "launch-missiles" })),
  "unknown-frame": (s) => s.end(Buffer.from([42, 0, 0, 0, 0])),
  "stdin-frame": (s) => s.end(frame(2, "x")),
  oversized: (s) => s.write(Buffer.from([1, 0xff, 0xff, 0xff, 0xff])),
  "truncated-close": (s) => s.end(partial),
  "truncated-stall": (s) => s.write(partial),
  // A stdout frame that claims 1 MiB and brings 10 bytes: the host streams data frames in pieces,
  // so it holds nothing for it, and must still see the frame as begun and not finished.
  "data-frame-close": (s) => s.end(Buffer.concat([json({ type: "started", pid: 4242 }), dataHead, Buffer.alloc(10, 0x78)])),
  "data-frame-stall": (s) => s.write(Buffer.concat([json({ type: "started", pid: 4242 }), dataHead, Buffer.alloc(10, 0x78)])),
  silent: () => undefined,
  "endless-stdout": (s) => {
    s.write(json({ type: "started", pid: 4242 }));
    const chunk = frame(3, Buffer.alloc(65536, 0x79));
    const pump = () => {
      while (!s.destroyed && s.write(chunk));
      if (!s.destroyed) s.once("drain", pump);
    };
    pump();
  },
  "bad-stat": (s) => s.end(json({ type: "stat", stat: { kind: "fifo", size: -1 } })),
  version: (s) => s.end(json({ type: "version", version: "6.6.6", protocol: 999, pid: 1 })),
  // What an agent of an older protocol (a VM booted before an upgrade) answers.
  "version-older": (s) => s.end(json({ type: "version", version: "0.0.1", protocol: 0, pid: 1 })),
  // A version reply like the real agent's, features and all: the host goes on to the op it checked for.
  "version-current": (s) => s.end(json({ type: "version", version: "6.6.6", protocol: PROTOCOL, pid: 1, features: FEATURES })),
  "pty.open": (s) => s.end(json({ type: "session", session: { sessionId: "x", cols: "80" } })),
  "data-first": (s) => s.end(frame(3, "data before any stat")),
  "data-after-eof": (s) => s.end(Buffer.concat([json({ type: "stat", stat: { kind: "file", size: 4, mode: 420, uid: 0, gid: 0, mtimeMs: 0 } }), frame(3, "data"), frame(5, ""), frame(3, "more")])),
  "never-reads": (s) => s.pause(),
};
const server = net.createServer((s) => {
  s.on("error", () => undefined);
  let buf = Buffer.alloc(0);
  let started = false;
  s.on("data", (chunk) => {
    if (started) return;
    buf = Buffer.concat([buf, chunk]);
    if (buf.length < 5 || buf.length < 5 + buf.readUInt32BE(1)) return;
    started = true;
    let req = {};
    try { req = JSON.parse(buf.subarray(5, 5 + buf.readUInt32BE(1)).toString()); } catch {}
    const name = (req.op === "version" && process.env.HOSTILE_VERSION) || (req.op === "ckpt.prepare" && process.env.HOSTILE_CKPT) || (req.command ?? (typeof req.path === "string" ? req.path.split("/").pop() : req.op));
    (cases[name] ?? cases["bad-json"])(s);
  });
});
try { fs.unlinkSync(SOCK); } catch {}
server.listen(SOCK, () => fs.writeFileSync("/tmp/hostile.ready", String(process.pid)));
`;

export interface HostileOpts {
  version?: HostileCase | "version-older" | "version-current";
  ckpt?: HostileCase;
}

/**
 * Replaces the VM's agent socket with the hostile listener, through the real agent (which keeps
 * running, unreachable). From then on every call on this VM meets the listener. `version` picks
 * how it answers the `version` op (what boot and start-up recovery send); default: a wrong protocol.
 * `ckpt` picks how it answers `ckpt.prepare`; default: bad JSON.
 */
export async function turnHostile(engine: Engine, vmId: string, opts: HostileOpts = {}): Promise<void> {
  const { path, script, start } = hostileListener(opts);
  await engine.guest.writeFile(vmId, path, script);
  const r = await engine.guest.exec(vmId, { command: start });
  if (r.exitCode !== 0) throw new Error(`the hostile listener did not start: ${r.stdout}${r.stderr}`);
}

/**
 * The listener as a file to put at `path` in the VM and a root command line that starts it and
 * exits 0 once it listens: for callers that reach the VM some other way (the HTTP API, say).
 */
export function hostileListener(opts: HostileOpts = {}): { path: string; script: string; start: string } {
  return {
    path: "/tmp/hostile.js",
    script: LISTENER,
    start: [
      `${opts.version ? `HOSTILE_VERSION=${opts.version} ` : ""}${opts.ckpt ? `HOSTILE_CKPT=${opts.ckpt} ` : ""}setsid /.capsule/lib/ld-linux-x86-64.so.2 --library-path /.capsule/lib /.capsule/bin/node /tmp/hostile.js </dev/null >/tmp/hostile.log 2>&1 &`,
      "for i in $(seq 200); do [ -e /tmp/hostile.ready ] && exit 0; sleep 0.05; done",
      "cat /tmp/hostile.log; exit 1",
    ].join("\n"),
  };
}

/**
 * The agent's half of `tcp.connect`, in-process: the request is validated at the protocol
 * boundary, the agent answers `ok` and then carries raw bytes both ways (a half-close included),
 * and nothing listening is a CONNECTION_REFUSED reply.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { FRAME_HEADER_BYTES, ProtocolError, encodeJson, parseRequest } from "@capsule/agent-protocol";
import { serveConnection } from "../src/dispatch.js";

test("tcp.connect takes a port from 1 to 65535 and nothing else", () => {
  assert.deepEqual(parseRequest({ op: "tcp.connect", port: 5173, extra: 1 }), { op: "tcp.connect", port: 5173 });
  assert.deepEqual(parseRequest({ op: "tcp.connect", port: 65535 }), { op: "tcp.connect", port: 65535 });
  for (const port of [0, 65536, -1, 1.5, "80", null, undefined]) {
    assert.throws(() => parseRequest({ op: "tcp.connect", port }), ProtocolError, `port ${String(port)}`);
  }
});

let dir: string;
let agent: net.Server;
let socketPath: string;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "capsule-tcp-connect-"));
  socketPath = path.join(dir, "agent.sock");
  agent = net.createServer(serveConnection);
  await new Promise<void>((r) => agent.listen(socketPath, r));
});
after(() => {
  agent.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Sends tcp.connect; resolves the first reply (parsed) and the socket, with any bytes after the reply. */
function tunnel(port: number): Promise<{ reply: Record<string, unknown>; sock: net.Socket; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ path: socketPath, allowHalfOpen: true });
    let buf = Buffer.alloc(0);
    sock.on("error", reject);
    sock.write(encodeJson({ op: "tcp.connect", port }));
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < FRAME_HEADER_BYTES) return;
      const len = buf.readUInt32BE(1);
      if (buf.length < FRAME_HEADER_BYTES + len) return;
      sock.off("data", onData);
      sock.pause();
      resolve({ reply: JSON.parse(buf.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + len).toString()) as Record<string, unknown>, sock, rest: buf.subarray(FRAME_HEADER_BYTES + len) });
    };
    sock.on("data", onData);
  });
}

function readAll(sock: net.Socket, first: Buffer): Promise<Buffer> {
  const chunks = [first];
  return new Promise((resolve) => {
    sock.on("data", (c: Buffer) => chunks.push(c));
    sock.once("end", () => resolve(Buffer.concat(chunks)));
    sock.resume();
  });
}

test("after ok the connection carries raw bytes both ways, and a half-close goes through", async () => {
  // A server that answers only once the client has finished sending (it sees our FIN).
  const server = net.createServer({ allowHalfOpen: true }, (c) => {
    const got: Buffer[] = [];
    c.on("data", (d: Buffer) => got.push(d));
    c.on("end", () => c.end(`got ${Buffer.concat(got).length} bytes: ${Buffer.concat(got).subarray(0, 5).toString()}`));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  try {
    const { reply, sock, rest } = await tunnel((server.address() as net.AddressInfo).port);
    assert.deepEqual(reply, { type: "ok" });
    const answer = readAll(sock, rest);
    sock.write("hello");
    sock.end(Buffer.alloc(3 * 1024 * 1024, 1));
    assert.equal((await answer).toString(), `got ${5 + 3 * 1024 * 1024} bytes: hello`);
  } finally {
    server.close();
  }
});

test("nothing listening is CONNECTION_REFUSED, and the agent closes", async () => {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const { reply, sock, rest } = await tunnel(port);
  assert.equal(reply.type, "error");
  assert.equal(reply.code, "CONNECTION_REFUSED");
  assert.equal((await readAll(sock, rest)).length, 0);
  sock.end();
});

/**
 * The host half of a streamed upload (`AgentConn.sendStream`) against an agent played by a unix
 * socket in this process: small source chunks go out joined into frames of at most
 * MAX_FRAME_PAYLOAD, byte for byte; an agent that stops reading pauses the source after a bounded
 * amount (the host's upload window), and one that takes nothing for the drain deadline fails the
 * upload with AGENT_TIMEOUT; a source destroyed before its end, or failed before the upload
 * began, fails the upload.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { FrameDecoder, FrameType, MAX_FRAME_PAYLOAD } from "@capsule/agent-protocol";
import { AgentConn } from "../src/agent/client.js";
import { ErrorCode, isEngineError } from "../src/errors.js";

/** A source chunk the size of one TCP read of an HTTP body. */
const CHUNK = 64 * 1024;
/**
 * Bytes an agent that reads nothing may make the host take from its source: the upload window
 * (2 MiB), the frame that crossed it, the kernel's socket buffers and the source's own queue.
 */
const PULL_BOUND = 8 * MAX_FRAME_PAYLOAD;

/** A source of `chunks` chunks of CHUNK bytes (byte i is i mod 251), counting what was pulled. */
function counted(chunks: number): { source: Readable; pulled: () => number } {
  let i = 0;
  let pulled = 0;
  const source = new Readable({
    read() {
      if (i === chunks) return void this.push(null);
      const chunk = Buffer.alloc(CHUNK);
      for (let k = 0; k < CHUNK; k++) chunk[k] = (i * CHUNK + k) % 251;
      i++;
      pulled += CHUNK;
      this.push(chunk);
    },
  });
  return { source, pulled: () => pulled };
}

describe("a streamed upload's frames and backpressure", () => {
  let dir: string;
  let server: net.Server;
  let onPeer: (sock: net.Socket) => void = () => undefined;
  const peers = new Set<net.Socket>();

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-upload-"));
    server = net.createServer((sock) => {
      peers.add(sock);
      sock.on("close", () => peers.delete(sock)).on("error", () => undefined);
      onPeer(sock);
    });
    await new Promise<void>((resolve) => server.listen(path.join(dir, "agent.sock"), resolve));
  });
  after(async () => {
    for (const p of peers) p.destroy();
    await new Promise((resolve) => server.close(resolve));
    await fs.rm(dir, { recursive: true, force: true });
  });

  const connect = () =>
    new Promise<AgentConn>((resolve, reject) => {
      const sock = net.connect(path.join(dir, "agent.sock"), () => resolve(new AgentConn(sock)));
      sock.once("error", reject);
    });

  it("joins small chunks into frames of at most MAX_FRAME_PAYLOAD, the bytes unchanged", async () => {
    const chunks = 200; // 12.5 MiB
    const received = new Promise<{ sizes: number[]; data: Buffer }>((resolve) => {
      onPeer = (sock) => {
        const decoder = new FrameDecoder();
        const sizes: number[] = [];
        const parts: Buffer[] = [];
        sock.on("data", (chunk: Buffer) => {
          for (const f of decoder.push(chunk)) {
            if (f.type === FrameType.Eof) return resolve({ sizes, data: Buffer.concat(parts) });
            assert.equal(f.type, FrameType.Stdin);
            sizes.push(f.payload.length);
            parts.push(Buffer.from(f.payload));
          }
        });
      };
    });
    const conn = await connect();
    // It resolves with its last frames still queued for the socket, which the Eof follows.
    await conn.sendStream(counted(chunks).source, 5000);
    conn.sendEof();
    const { sizes, data } = await received;
    conn.close();
    assert.equal(data.length, chunks * CHUNK);
    for (let k = 0; k < data.length; k += 4099) assert.equal(data[k], k % 251);
    assert.ok(sizes.every((n) => n > 0 && n <= MAX_FRAME_PAYLOAD));
    // The source had every chunk at hand, so the frames are full ones, not one per chunk.
    assert.ok(sizes.length <= Math.ceil(data.length / MAX_FRAME_PAYLOAD) + 1, `${sizes.length} frames`);
  });

  it("a source destroyed without an error fails the upload instead of waiting for its end", async () => {
    onPeer = (sock) => sock.resume();
    const conn = await connect();
    const { source } = counted(100_000);
    setTimeout(() => source.destroy(), 50);
    await assert.rejects(conn.sendStream(source, 5000), /Premature close/);
    conn.close();
  });

  it("a source that failed before the upload began fails it at once", async () => {
    onPeer = (sock) => sock.resume();
    const conn = await connect();
    const { source } = counted(1);
    source.on("error", () => undefined); // as a pipeline() does for its streams
    source.destroy(new Error("over the chunk limit"));
    await new Promise((resolve) => setImmediate(resolve));
    await assert.rejects(conn.sendStream(source, 5000), /over the chunk limit/);
    conn.close();
  });

  it("an agent that reads nothing pauses the source, then fails the upload at the drain deadline", async () => {
    onPeer = (sock) => sock.pause();
    const conn = await connect();
    const { source, pulled } = counted(100_000); // 6 GiB if nothing stopped it
    const drainMs = 500;
    const started = Date.now();
    await assert.rejects(conn.sendStream(source, drainMs), (e: unknown) => isEngineError(e) && e.code === ErrorCode.AgentTimeout);
    assert.ok(Date.now() - started < drainMs + 2000);
    assert.ok(pulled() <= PULL_BOUND, `pulled ${pulled()} bytes`);
    assert.ok(conn.closed);
    source.destroy();
  });
});

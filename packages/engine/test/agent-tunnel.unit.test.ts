/**
 * The host half of `tcp.connect` played against a hostile agent: a unix socket in this process
 * answers the way root in the VM could. Every bad answer is refused with a coded error within the
 * reply deadline, nothing past the reply's 4 KiB bound is buffered, and the host's socket is
 * destroyed; a good answer hands over the stream with the bytes that followed the reply.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { encodeFrame, encodeJson, FrameType } from "@capsule/agent-protocol";
import { AgentClient } from "../src/agent/client.js";
import { ErrorCode, isEngineError } from "../src/errors.js";

/** The fake agent's answer to the one request it reads; undefined: it answers nothing. */
type Answer = (sock: net.Socket) => void;

describe("tcp.connect against a hostile agent", () => {
  let dir: string;
  let server: net.Server;
  let answer: Answer = () => undefined;
  const peers = new Set<net.Socket>();

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-tunnel-"));
    server = net.createServer((sock) => {
      peers.add(sock);
      sock.on("close", () => peers.delete(sock)).on("error", () => undefined);
      sock.once("data", () => answer(sock));
    });
    await new Promise<void>((resolve) => server.listen(path.join(dir, "agent.sock"), resolve));
  });
  after(async () => {
    for (const p of peers) p.destroy();
    await new Promise((resolve) => server.close(resolve));
    await fs.rm(dir, { recursive: true, force: true });
  });

  const client = () => new AgentClient(path.join(dir, "agent.sock"));
  const refusedWith = async (code: string, pattern: RegExp, replyMs = 2000) => {
    const started = Date.now();
    await assert.rejects(client().tunnel(8080, replyMs), (e: unknown) => isEngineError(e) && e.code === code && pattern.test(e.message));
    return Date.now() - started;
  };

  it("refuses a data frame, an oversized JSON frame, junk JSON and a reply of the wrong type", async () => {
    answer = (s) => s.write(encodeFrame(FrameType.Stdout, "hello"));
    await refusedWith(ErrorCode.AgentProtocolError, /frame of type/);
    // Only the header is sent: the 1 MiB it claims is refused before any of it is awaited.
    answer = (s) => s.write(encodeFrame(FrameType.Json, Buffer.alloc(4097)).subarray(0, 5));
    await refusedWith(ErrorCode.AgentProtocolError, /4097 bytes/);
    answer = (s) => s.write(encodeFrame(FrameType.Json, "{not json"));
    await refusedWith(ErrorCode.AgentProtocolError, /./);
    answer = (s) => s.write(encodeJson({ type: "exists", exists: true }));
    await refusedWith(ErrorCode.AgentProtocolError, /answered exists to tcp.connect/);
  });

  it("a silent agent times out at the reply deadline, one that hangs up mid-reply is unavailable", async () => {
    answer = () => undefined;
    const waited = await refusedWith(ErrorCode.AgentTimeout, /did not answer tcp.connect within 300 ms/, 300);
    assert.ok(waited >= 290 && waited < 2000, `waited ${waited} ms`);
    answer = (s) => s.end(encodeJson({ type: "ok" }).subarray(0, 3));
    await refusedWith(ErrorCode.AgentUnavailable, /closed the connection/);
    // The refused connections were closed by the host, not left to the agent.
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(peers.size, 0);
  });

  it("an ok hands over the stream, starting with the bytes that came with the reply", async () => {
    answer = (s) => {
      s.write(Buffer.concat([encodeJson({ type: "ok" }), Buffer.from("first ")]));
      s.on("data", (d) => s.write(d));
    };
    const sock = await client().tunnel(8080, 2000);
    sock.resume();
    sock.write("echoed");
    let got = "";
    for await (const chunk of sock) {
      got += String(chunk);
      if (got.length >= "first echoed".length) break;
    }
    assert.equal(got, "first echoed");
    sock.destroy();
  });
});

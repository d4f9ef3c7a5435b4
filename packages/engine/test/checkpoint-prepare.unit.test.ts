/**
 * The host side of `ckpt.prepare` against a fake agent (a unix socket in this process): an agent
 * without the feature is refused before it is asked to prepare (the API's 501 AGENT_OUTDATED); a
 * current one is done only once it answered `ok` and closed its end; a refusal is the agent's.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { AGENT_FEATURES, encodeJson, FrameDecoder, FrameType } from "@capsule/agent-protocol";
import { AgentClient } from "../src/agent/client.js";
import { ErrorCode, isEngineError } from "../src/errors.js";
import { GuestOps } from "../src/guest-ops.js";

describe("ckpt.prepare from the host", () => {
  let dir: string;
  let server: net.Server;
  let features: string[] | undefined;
  /** How the fake agent answers ckpt.prepare. */
  let answer: "ok-and-close" | "refuse" | "wrong-reply" = "ok-and-close";
  const requests: Array<Record<string, unknown>> = [];

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-ckpt-prepare-"));
    server = net.createServer((sock) => {
      sock.on("error", () => undefined);
      const decoder = new FrameDecoder();
      sock.on("data", (chunk: Buffer) => {
        for (const frame of decoder.push(chunk)) {
          if (frame.type !== FrameType.Json) continue;
          const req = JSON.parse(frame.payload.toString("utf8")) as { op: string };
          requests.push(req);
          if (req.op === "version") sock.end(encodeJson({ type: "version", version: "0.0.0", protocol: 1, pid: 1, ...(features ? { features } : {}) }));
          else if (answer === "refuse") sock.end(encodeJson({ type: "error", code: "INTERNAL", message: "cannot prepare" }));
          // Root in the VM answers something else than ok: the host must not take it for prepared.
          else if (answer === "wrong-reply") sock.end(encodeJson({ type: "stat", kind: "file", size: 1 }));
          else sock.write(encodeJson({ type: "ok" }), () => sock.destroy());
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(path.join(dir, "agent.sock"), resolve));
  });
  after(async () => {
    await new Promise((resolve) => server.close(resolve));
    await fs.rm(dir, { recursive: true, force: true });
  });

  const guest = new GuestOps(async () => new AgentClient(path.join(dir, "agent.sock")));

  it("an older agent is refused before it is asked to prepare", async () => {
    features = ["svc.notify"];
    requests.length = 0;
    await assert.rejects(guest.checkpointPrepare("vm-1"), (e: unknown) => isEngineError(e) && e.code === ErrorCode.AgentError && e.agentCode === "BAD_REQUEST" && /unknown op "ckpt\.prepare"/.test(e.message));
    assert.deepEqual(requests.map((r) => r.op), ["version"]);
  });

  it("a current agent: resolved once it answered and closed its end, deafMs passed on", async () => {
    features = [AGENT_FEATURES.checkpoint];
    answer = "ok-and-close";
    requests.length = 0;
    await guest.checkpointPrepare("vm-1", { deafMs: 2_000 });
    assert.deepEqual(requests, [{ op: "version" }, { op: "ckpt.prepare", deafMs: 2_000 }]);
  });

  it("a hostile agent's reply other than ok: rejected, never taken for prepared", async () => {
    features = [AGENT_FEATURES.checkpoint];
    answer = "wrong-reply";
    await assert.rejects(guest.checkpointPrepare("vm-1"), (e: unknown) => isEngineError(e) && e.code === ErrorCode.AgentProtocolError);
  });

  it("an agent that refuses: its error", async () => {
    answer = "refuse";
    await assert.rejects(guest.checkpointPrepare("vm-1"), (e: unknown) => isEngineError(e) && e.agentCode === "INTERNAL" && /cannot prepare/.test(e.message));
  });
});

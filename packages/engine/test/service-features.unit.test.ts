/**
 * A service with sd_notify fields (`readySignal`, `watchdogSec`) is defined only in a VM whose
 * agent says it has them: an agent older than them would store the service as a plain one and
 * ignore both. The agent is a unix socket in this process, answering as an older or a current
 * agent does; the host's refusal is the one an older agent gives for an op it lacks, which the
 * API turns into its 501 AGENT_OUTDATED.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { encodeJson, FrameDecoder, FrameType, type ServiceSpec } from "@capsule/agent-protocol";
import { AgentClient } from "../src/agent/client.js";
import { ErrorCode, isEngineError } from "../src/errors.js";
import { GuestOps } from "../src/guest-ops.js";

describe("services with sd_notify fields and the agent's features", () => {
  let dir: string;
  let server: net.Server;
  /** The `features` the fake agent's version reply carries; undefined: none (an older agent). */
  let features: string[] | undefined;
  /** The ops the fake agent was asked for, in order. */
  const ops: string[] = [];

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-features-"));
    server = net.createServer((sock) => {
      sock.on("error", () => undefined);
      const decoder = new FrameDecoder();
      sock.on("data", (chunk: Buffer) => {
        for (const frame of decoder.push(chunk)) {
          if (frame.type !== FrameType.Json) continue;
          const req = JSON.parse(frame.payload.toString("utf8")) as { op: string };
          ops.push(req.op);
          if (req.op === "version") sock.end(encodeJson({ type: "version", version: "0.0.0", protocol: 1, pid: 1, ...(features ? { features } : {}) }));
          else if (req.op === "svc.define") sock.end(encodeJson({ type: "services", services: [] }));
          else sock.end(encodeJson({ type: "error", code: "BAD_REQUEST", message: `unknown op ${JSON.stringify(req.op)}` }));
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
  const spec = (extra: Partial<ServiceSpec>): ServiceSpec => ({ name: "web", mode: "service", exec: ["sleep 60"], enable: true, ...extra }) as ServiceSpec;
  const define = (s: ServiceSpec) => guest.serviceDefine("vm-1", [s], { replace: true, start: false });

  it("an older agent: readySignal or watchdogSec is refused before anything is defined", async () => {
    features = undefined;
    for (const extra of [{ readySignal: true }, { watchdogSec: 5 }]) {
      ops.length = 0;
      await assert.rejects(define(spec(extra)), (e: unknown) => isEngineError(e) && e.code === ErrorCode.AgentError && e.agentCode === "BAD_REQUEST" && /unknown op "svc\.notify"/.test(e.message));
      assert.deepEqual(ops, ["version"], "no svc.define reached the older agent");
    }
    ops.length = 0;
    await define(spec({}));
    assert.deepEqual(ops, ["svc.define"], "a plain service needs no version check");
  });

  it("a current agent: the service is defined", async () => {
    features = ["svc.notify"];
    ops.length = 0;
    await define(spec({ readySignal: true, watchdogSec: 5 }));
    assert.deepEqual(ops, ["version", "svc.define"]);
  });
});

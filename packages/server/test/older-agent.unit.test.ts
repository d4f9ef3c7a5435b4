/** A VM whose agent predates the services and tcp.connect ops answers a clear 501, not a bare 400. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { EngineError, ErrorCode } from "@capsule/engine";
import { toApiError } from "../src/errors.js";

/** What the host makes of an agent's error reply (AgentClient: AGENT_ERROR with the agent's code). */
const agentSays = (code: string, message: string) => new EngineError(ErrorCode.AgentError, message, { agentCode: code });

test("an agent without svc.* or tcp.connect: 501 unsupported, naming the op and the restart", () => {
  for (const op of ["svc.list", "svc.define", "svc.logs", "tcp.connect"]) {
    // The old agent's parseRequest: `unknown op "<op>"`, answered as BAD_REQUEST.
    const api = toApiError(agentSays("BAD_REQUEST", `unknown op ${JSON.stringify(op)}`));
    const body = api.body();
    assert.equal(api.status, 501, op);
    assert.equal(body.code, "BAD_REQUEST");
    assert.equal(body.unsupported, true);
    assert.equal(body.reason, "AGENT_OUTDATED");
    assert.match(body.message, new RegExp(`older Capsule agent without ${op.replace(".", "\\.")}: stop and start the VM`));
  }
});

test("other agent refusals keep their meaning", () => {
  const refused = toApiError(agentSays("BAD_REQUEST", 'unknown op "rm -rf"'), "FILES_BAD_REQUEST");
  assert.equal(refused.status, 400);
  assert.equal(refused.body().code, "FILES_BAD_REQUEST");
  const denied = toApiError(agentSays("PERMISSION_DENIED", 'unknown op "svc.list"'));
  assert.equal(denied.status, 400, "only a BAD_REQUEST is the old agent's unknown op");
});

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ExecClientMessage, ExecServerMessage, PtyClientMessage, PtyServerMessage, parseWsMessage } from "../src/ws.js";

describe("WebSocket messages", () => {
  it("PTY client messages: resize within bounds, a signal name (mapped by the server, any case); anything else is ignored", () => {
    assert.deepEqual(parseWsMessage(PtyClientMessage, '{"type":"resize","cols":80,"rows":24}'), { type: "resize", cols: 80, rows: 24 });
    assert.deepEqual(parseWsMessage(PtyClientMessage, '{"type":"signal","signal":"SIGINT"}'), { type: "signal", signal: "SIGINT" });
    // Names reach the server as sent (freestyle 0.2 sends lower case); it maps them onto the agent
    // protocol's signal table, where SIGSTOP is unknown (ignored on /v1, an error frame on /v5).
    assert.deepEqual(parseWsMessage(PtyClientMessage, '{"type":"signal","signal":"sigkill"}'), { type: "signal", signal: "sigkill" });
    assert.deepEqual(parseWsMessage(PtyClientMessage, '{"type":"signal","signal":"SIGSTOP"}'), { type: "signal", signal: "SIGSTOP" });
    for (const bad of ['{"type":"resize","cols":0,"rows":24}', '{"type":"resize","cols":80.5,"rows":24}', '{"type":"resize","cols":80,"rows":100000}', `{"type":"signal","signal":"${"K".repeat(17)}"}`, '{"type":"signal","signal":9}', '{"type":"nope"}', "not json", "null", "[]"]) {
      assert.equal(parseWsMessage(PtyClientMessage, bad), undefined, bad);
    }
  });

  it("exec-stream client messages: eof; kill with a signal name or none (the server maps an unknown or absent one to SIGKILL)", () => {
    assert.deepEqual(parseWsMessage(ExecClientMessage, '{"type":"eof"}'), { type: "eof" });
    assert.deepEqual(parseWsMessage(ExecClientMessage, '{"type":"kill","signal":"SIGTERM"}'), { type: "kill", signal: "SIGTERM" });
    assert.deepEqual(parseWsMessage(ExecClientMessage, '{"type":"kill","signal":"SIGFOO"}'), { type: "kill", signal: "SIGFOO" });
    assert.deepEqual(parseWsMessage(ExecClientMessage, '{"type":"kill"}'), { type: "kill" });
  });

  it("server messages as the server sends them", () => {
    assert.deepEqual(parseWsMessage(PtyServerMessage, '{"type":"sessionInfo","sessionId":"s1"}'), { type: "sessionInfo", sessionId: "s1" });
    assert.deepEqual(parseWsMessage(PtyServerMessage, '{"type":"exited","exitCode":null}'), { type: "exited", exitCode: null });
    assert.deepEqual(parseWsMessage(ExecServerMessage, '{"type":"exit","exitCode":137,"signal":"SIGKILL","timedOut":false}'), { type: "exit", exitCode: 137, signal: "SIGKILL", timedOut: false });
    assert.deepEqual(parseWsMessage(ExecServerMessage, '{"type":"error","code":"VM_NOT_RUNNING","message":"stopped"}'), { type: "error", code: "VM_NOT_RUNNING", message: "stopped" });
    assert.equal(parseWsMessage(ExecServerMessage, '{"type":"error","code":"MADE_UP","message":"x"}'), undefined, "error frames carry registry codes only");
  });
});

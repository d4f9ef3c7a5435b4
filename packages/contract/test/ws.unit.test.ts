import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ExecClientMessage, ExecServerMessage, PtyClientMessage, PtyServerMessage, parseWsMessage } from "../src/ws.js";

describe("WebSocket messages", () => {
  it("PTY client messages: resize within bounds, known signals; anything else is ignored", () => {
    assert.deepEqual(parseWsMessage(PtyClientMessage, '{"type":"resize","cols":80,"rows":24}'), { type: "resize", cols: 80, rows: 24 });
    assert.deepEqual(parseWsMessage(PtyClientMessage, '{"type":"signal","signal":"SIGINT"}'), { type: "signal", signal: "SIGINT" });
    for (const bad of ['{"type":"resize","cols":0,"rows":24}', '{"type":"resize","cols":80.5,"rows":24}', '{"type":"resize","cols":80,"rows":100000}', '{"type":"signal","signal":"SIGSTOP"}', '{"type":"nope"}', "not json", "null", "[]"]) {
      assert.equal(parseWsMessage(PtyClientMessage, bad), undefined, bad);
    }
  });

  it("exec-stream client messages: eof; kill with an unknown or absent signal means SIGKILL", () => {
    assert.deepEqual(parseWsMessage(ExecClientMessage, '{"type":"eof"}'), { type: "eof" });
    assert.deepEqual(parseWsMessage(ExecClientMessage, '{"type":"kill","signal":"SIGTERM"}'), { type: "kill", signal: "SIGTERM" });
    assert.equal(parseWsMessage(ExecClientMessage, '{"type":"kill","signal":"SIGFOO"}')?.type, "kill");
    assert.equal((parseWsMessage(ExecClientMessage, '{"type":"kill","signal":"SIGFOO"}') as { signal?: string }).signal, undefined);
    assert.equal(parseWsMessage(ExecClientMessage, '{"type":"kill"}')?.type, "kill");
  });

  it("server messages as the server sends them", () => {
    assert.deepEqual(parseWsMessage(PtyServerMessage, '{"type":"sessionInfo","sessionId":"s1"}'), { type: "sessionInfo", sessionId: "s1" });
    assert.deepEqual(parseWsMessage(PtyServerMessage, '{"type":"exited","exitCode":null}'), { type: "exited", exitCode: null });
    assert.deepEqual(parseWsMessage(ExecServerMessage, '{"type":"exit","exitCode":137,"signal":"SIGKILL","timedOut":false}'), { type: "exit", exitCode: 137, signal: "SIGKILL", timedOut: false });
    assert.deepEqual(parseWsMessage(ExecServerMessage, '{"type":"error","code":"VM_NOT_RUNNING","message":"stopped"}'), { type: "error", code: "VM_NOT_RUNNING", message: "stopped" });
    assert.equal(parseWsMessage(ExecServerMessage, '{"type":"error","code":"MADE_UP","message":"x"}'), undefined, "error frames carry registry codes only");
  });
});

/** Unknown errors reach a tenant as a generic INTERNAL_ERROR with a request id; the cause goes only to the log. */
import assert from "node:assert/strict";
import { it } from "node:test";
import { EngineError, ErrorCode } from "@capsule/engine";
import { setInternalErrorSink, toApiError } from "../src/errors.js";

it("an unknown error's host text never reaches the tenant; the log has it under the request id", () => {
  const logged: Array<{ requestId: string; err: unknown; engineCode?: string }> = [];
  setInternalErrorSink((e) => logged.push(e));
  const hostText = "runsc could not start the sandbox: /var/lib/capsule/vms/abc/runtime.log: tail of the log";
  for (const err of [new Error(hostText), new EngineError(ErrorCode.RuntimeFailed, hostText), hostText]) {
    const api = toApiError(err);
    const body = api.body();
    assert.equal(api.status, 500);
    assert.equal(body.code, "INTERNAL_ERROR");
    assert.ok(!JSON.stringify(body).includes("/var/lib"), JSON.stringify(body));
    assert.ok(!JSON.stringify(body).includes("runsc"), JSON.stringify(body));
    assert.match(String(body.requestId), /^[0-9a-f]{16}$/);
    assert.ok(body.message.includes(String(body.requestId)), "the message names the request id");
    const entry = logged.find((l) => l.requestId === body.requestId);
    assert.ok(entry, "the cause was logged under that id");
    assert.ok(String((entry.err as Error)?.message ?? entry.err).includes(hostText));
  }
  assert.equal(toApiError(new EngineError(ErrorCode.RuntimeFailed, "x")).body().engineCode, ErrorCode.RuntimeFailed);
  // Known errors keep their own messages.
  assert.equal(toApiError(new EngineError(ErrorCode.VmNotFound, "no VM abc")).body().message, "no VM abc");
});

/** The pure parts of the WebSocket hardening: the handshake check, the stdin gate, the exec-stream's start message. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ExecClientMessage, ExecStart, parseWsMessage } from "@capsule/contract/ws";
import type { WebSocket } from "ws";
import { STDIN_HIGH_WATER, stdinGate } from "../src/ws/bridge.js";
import { handshakeProblem } from "../src/ws/upgrade.js";

const GOOD = { upgrade: "websocket", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version": "13" };

describe("WebSocket hardening (unit)", () => {
  it("handshakeProblem accepts what ws accepts and names what is wrong", () => {
    assert.equal(handshakeProblem({ method: "GET", headers: GOOD }), undefined);
    assert.equal(handshakeProblem({ method: "GET", headers: { ...GOOD, upgrade: "WebSocket", "sec-websocket-version": "8" } }), undefined);
    assert.match(handshakeProblem({ method: "POST", headers: GOOD }) ?? "", /GET/);
    assert.match(handshakeProblem({ method: "GET", headers: { ...GOOD, upgrade: "h2c" } }) ?? "", /Upgrade/);
    const { "sec-websocket-key": _k, ...noKey } = GOOD;
    assert.match(handshakeProblem({ method: "GET", headers: noKey }) ?? "", /Sec-WebSocket-Key/);
    assert.match(handshakeProblem({ method: "GET", headers: { ...GOOD, "sec-websocket-key": "short==" } }) ?? "", /Sec-WebSocket-Key/);
    assert.match(handshakeProblem({ method: "GET", headers: { ...GOOD, "sec-websocket-version": "12" } }) ?? "", /Version/);
    const { "sec-websocket-version": _v, ...noVersion } = GOOD;
    assert.match(handshakeProblem({ method: "GET", headers: noVersion }) ?? "", /Version/);
  });

  it("stdinGate stops reading above the high-water mark, reads on below half, and for good on release", () => {
    const calls: string[] = [];
    const ws = {
      isPaused: false,
      pause() {
        this.isPaused = true;
        calls.push("pause");
      },
      resume() {
        this.isPaused = false;
        calls.push("resume");
      },
    };
    const gate = stdinGate(ws as unknown as WebSocket);
    gate.queued(STDIN_HIGH_WATER);
    assert.deepEqual(calls, [], "at the mark: still reading");
    gate.queued(1);
    assert.deepEqual(calls, ["pause"]);
    gate.queued(STDIN_HIGH_WATER); // a frame already parsed while paused
    gate.taken(STDIN_HIGH_WATER);
    assert.deepEqual(calls, ["pause"], "still over half");
    gate.taken(STDIN_HIGH_WATER / 2 + 1);
    assert.deepEqual(calls, ["pause", "resume"]);
    gate.queued(2 * STDIN_HIGH_WATER);
    assert.deepEqual(calls, ["pause", "resume", "pause"]);
    gate.release();
    assert.deepEqual(calls, ["pause", "resume", "pause", "resume"]);
    gate.queued(10 * STDIN_HIGH_WATER);
    assert.equal(ws.isPaused, false, "after release nothing pauses the socket");
  });

  it("the exec-stream start message: env names and values, user, cwd, timeout", () => {
    const ok = parseWsMessage(ExecClientMessage, JSON.stringify({ type: "start", command: "echo $A", env: { A: "x y", _B2: "" }, user: "claude", cwd: "/tmp", timeoutMs: 5 }));
    assert.deepEqual(ok, { type: "start", command: "echo $A", env: { A: "x y", _B2: "" }, user: "claude", cwd: "/tmp", timeoutMs: 5 });
    for (const bad of [
      { type: "start", command: "" },
      { type: "start", command: "x", env: { "A-B": "1" } },
      { type: "start", command: "x", env: { A: 1 } },
      { type: "start", command: "x", user: "Root;rm" },
      { type: "start", command: "x", cwd: "tmp" },
      { type: "start", command: "x", timeoutMs: 0 },
    ]) {
      assert.equal(ExecStart.safeParse(bad).success, false, JSON.stringify(bad));
    }
  });
});

/** The VM lifecycle table (pure logic; the real-VM suites exercise it through the engine). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EngineError, ErrorCode, isEngineError, type VmState } from "@capsule/engine";
import { assertTransition, canTransition, requireState } from "../src/lifecycle.js";

const STATES: readonly VmState[] = ["creating", "starting", "running", "stopping", "stopped", "paused", "lost", "deleting", "deleted"];

/** The documented diagram in lifecycle.ts, written out: every allowed move, nothing else. */
const ALLOWED: Record<VmState, readonly VmState[]> = {
  creating: ["running", "deleting"],
  starting: ["running", "stopped", "lost", "deleting"],
  running: ["stopping", "paused", "lost", "deleting"],
  paused: ["running", "stopping", "lost", "deleting"],
  stopping: ["stopped", "lost", "deleting"],
  stopped: ["starting", "lost", "deleting"],
  lost: ["starting", "deleting"],
  deleting: ["deleted"],
  deleted: [],
};

function reachable(from: VmState): Set<VmState> {
  const seen = new Set<VmState>([from]);
  const todo = [from];
  while (todo.length > 0) {
    const s = todo.pop() as VmState;
    for (const t of STATES) {
      if (canTransition(s, t) && !seen.has(t)) {
        seen.add(t);
        todo.push(t);
      }
    }
  }
  return seen;
}

describe("VM lifecycle", () => {
  it("allows exactly the documented transitions (all 81 pairs)", () => {
    for (const from of STATES) {
      for (const to of STATES) assert.equal(canTransition(from, to), ALLOWED[from].includes(to), `${from} -> ${to}`);
    }
  });

  it("every state but deleted can be deleted, deleted is final, and no state goes back to creating", () => {
    for (const s of STATES) {
      if (s !== "deleting" && s !== "deleted") assert.ok(canTransition(s, "deleting"), `${s} -> deleting`);
      assert.ok(!canTransition("deleted", s), `deleted -> ${s}`);
      assert.ok(!canTransition(s, "creating"), `${s} -> creating`);
      assert.ok(!canTransition(s, s), `${s} -> ${s}`);
    }
    // A stopped VM is started through `starting`, never straight to running.
    assert.ok(!canTransition("stopped", "running"));
    // Every state is reachable from a create, and every state can still end as deleted.
    assert.deepEqual([...reachable("creating")].sort(), [...STATES].sort());
    for (const s of STATES) assert.ok(reachable(s).has("deleted"), `${s} can end deleted`);
  });

  it("assertTransition refuses with VM_INVALID_STATE naming the VM and both states", () => {
    assert.doesNotThrow(() => assertTransition("vm1", "running", "stopping"));
    assert.throws(
      () => assertTransition("vm1", "deleted", "running"),
      (e: unknown) => e instanceof EngineError && isEngineError(e) && e.code === ErrorCode.InvalidState && /vm1/.test(e.message) && /deleted/.test(e.message) && /running/.test(e.message),
    );
  });

  it("requireState names the needed states and tells how to fix a stopped or lost VM", () => {
    assert.doesNotThrow(() => requireState("vm1", "running", "exec in", ["running"]));
    const refused = (actual: VmState) => {
      try {
        requireState("vm1", actual, "snapshot", ["running", "stopped"]);
      } catch (e) {
        assert.ok(isEngineError(e) && e.code === ErrorCode.InvalidState);
        return e.message;
      }
      assert.fail(`requireState accepted ${actual}`);
    };
    assert.match(refused("deleting"), /cannot snapshot VM vm1: it is deleting \(needs running or stopped\)$/);
    assert.throws(() => requireState("vm1", "stopped", "exec in", ["running"]), /start it first/);
    assert.throws(() => requireState("vm1", "lost", "exec in", ["running"]), /start it first/);
    assert.throws(() => requireState("vm1", "paused", "exec in", ["running"]), /start it first/);
  });
});

/** Per-VM limit validation and the engine's option defaults (pure logic; limits.test.ts enforces them on real VMs). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEFAULT_LIMITS, ErrorCode, isEngineError, type VmLimits } from "@capsule/engine";
import { resolveOptions, validateLimits } from "../src/config.js";

const RANGES: Record<keyof VmLimits, [number, number]> = {
  memoryMb: [64, 1024 * 1024],
  cpus: [0.05, 1024],
  pids: [16, 1 << 22],
  diskMb: [64, 16 * 1024 * 1024],
};

/** The INVALID_ARGUMENT message validateLimits throws for `limits`, or undefined if it accepts them. */
function refusal(limits: VmLimits): string | undefined {
  try {
    validateLimits(limits);
    return undefined;
  } catch (e) {
    assert.ok(isEngineError(e), `an EngineError, not ${String(e)}`);
    assert.equal(e.code, ErrorCode.InvalidArgument);
    return e.message;
  }
}

describe("VM limits", () => {
  it("the documented defaults are valid and unchanged", () => {
    assert.deepEqual(DEFAULT_LIMITS, { memoryMb: 2048, cpus: 1, pids: 1024, diskMb: 10240 });
    assert.deepEqual(validateLimits({ ...DEFAULT_LIMITS }), DEFAULT_LIMITS);
    assert.ok(Object.isFrozen(DEFAULT_LIMITS));
  });

  it("accepts each field's bounds and refuses just outside them, naming the field and its range", () => {
    for (const [field, [min, max]] of Object.entries(RANGES) as Array<[keyof VmLimits, [number, number]]>) {
      assert.equal(refusal({ ...DEFAULT_LIMITS, [field]: min }), undefined, `${field} = ${min}`);
      assert.equal(refusal({ ...DEFAULT_LIMITS, [field]: max }), undefined, `${field} = ${max}`);
      for (const bad of [min - (field === "cpus" ? 0.01 : 1), max + 1]) {
        assert.equal(refusal({ ...DEFAULT_LIMITS, [field]: bad }), `limits.${field} must be a number from ${min} to ${max}, got ${bad}`);
      }
    }
  });

  it("refuses what is not a finite number", () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, -1, 0, "2048", null, undefined]) {
      const message = refusal({ ...DEFAULT_LIMITS, memoryMb: bad as number });
      assert.match(message ?? "", /^limits\.memoryMb must be a number from 64 to 1048576, got /, `memoryMb = ${String(bad)}`);
    }
  });

  it("whole MiB and tasks are floored; CPUs keep their fraction", () => {
    assert.deepEqual(validateLimits({ memoryMb: 512.9, cpus: 0.25, pids: 99.5, diskMb: 1024.7 }), { memoryMb: 512, cpus: 0.25, pids: 99, diskMb: 1024 });
  });

  it("engine options: each limit falls back to its default; paths follow the data dir", () => {
    const o = resolveOptions({ dataDir: "/srv/capsule-data", limits: { memoryMb: 512 } });
    assert.deepEqual(o.limits, { ...DEFAULT_LIMITS, memoryMb: 512 });
    assert.equal(o.imagesDir, "/srv/capsule-data/images");
    assert.equal(o.agentBundleDir, "/srv/capsule-data/agent");
    assert.equal(o.runtime, "runsc");
    assert.equal(o.egress, "none");
    assert.deepEqual(o.allowedHostPorts, []);
  });
});

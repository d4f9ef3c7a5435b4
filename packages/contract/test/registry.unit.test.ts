import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { API_ERROR_CODES, API_ERRORS, errorStatus, isApiErrorCode } from "../src/errors.js";

/** The official client's own code → error-class table (not a copy). */
// Its type declarations omit `Errors`, so it is read through a cast.
const client = (await import("freestyle")) as unknown as { Errors: { FREESTYLE_ERROR_CODE_MAP: Record<string, { code: string; statusCode: number }> } };
const CLIENT_TABLE = client.Errors.FREESTYLE_ERROR_CODE_MAP;

describe("error registry", () => {
  it("the installed client's table is the one the wire spec describes", () => {
    assert.ok(Object.keys(CLIENT_TABLE).length > 300, "freestyle@0.1.63 knows about 327 codes");
  });

  it("every code is one the freestyle client knows, with the status its error class documents", () => {
    for (const code of API_ERROR_CODES) {
      const cls = CLIENT_TABLE[code];
      assert.ok(cls, `${code} is not in the freestyle client's table: it would retry POST /v1/vms forever`);
      assert.equal(cls.code, code);
      assert.equal(API_ERRORS[code].status, cls.statusCode, `${code}: registry status vs the client's ${cls.statusCode}`);
    }
  });

  it("has the codes the hostile-guests work needs", () => {
    for (const c of ["VM_LIMIT_EXCEEDED", "SNAPSHOT_LIMIT_EXCEEDED", "MEM_OVER_PLAN_LIMIT", "VCPU_OVER_PLAN_LIMIT", "SERVICE_UNAVAILABLE", "INTERNAL_ERROR"]) {
      assert.ok(isApiErrorCode(c), c);
    }
  });

  it("every entry has a status, a description and a retry flag", () => {
    for (const code of API_ERROR_CODES) {
      const e = API_ERRORS[code];
      assert.ok(e.status >= 400 && e.status < 600, code);
      assert.equal(errorStatus(code), e.status);
      assert.ok(e.description.length > 10, code);
      assert.equal(typeof e.retryable, "boolean", code);
    }
    assert.equal(isApiErrorCode("toString"), false);
    assert.equal(isApiErrorCode("NOPE"), false);
  });

  it("the registry and the wire constants load without any import (the SDK and CLI stay light)", async () => {
    for (const f of ["errors.js", "wire.js"]) {
      const js = await readFile(fileURLToPath(new URL(`../src/${f}`, import.meta.url)), "utf8");
      assert.doesNotMatch(js, /^\s*import\s|\bimport\(|\brequire\(/m, `${f} must not import anything`);
    }
  });
});

/** The `/v1` exec-await request's Capsule extensions: `env` names as exec-stream's, `stdin` bounded like `/v5`'s. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ExecRequest, MAX_EXEC_STDIN_BYTES } from "../src/schemas.js";
import { ExecRequest as V5ExecRequest } from "../src/v5/schemas.js";

const stdinOf = (bytes: number) => Buffer.alloc(bytes, 0x61).toString("base64");

describe("/v1 ExecRequest env and stdin", () => {
  it("what the freestyle 0.1 client sends is still valid", () => {
    assert.ok(ExecRequest.safeParse({ command: "ls", terminal: null, timeoutMs: null }).success);
  });

  it("env: shell variable names only", () => {
    assert.ok(ExecRequest.safeParse({ command: "env", env: { _A1: "x", PATH: "/bin" } }).success);
    for (const name of ["A-B", "1A", "", "A B", "A=B"]) {
      const r = ExecRequest.safeParse({ command: "env", env: { [name]: "x" } });
      assert.ok(!r.success, name);
      assert.match(r.error.issues[0]?.message ?? "", /shell variable name/);
    }
    assert.ok(!ExecRequest.safeParse({ command: "env", env: { A: 1 } }).success, "values are strings");
  });

  it("stdin: base64, at most MAX_EXEC_STDIN_BYTES decoded, exactly", () => {
    assert.ok(ExecRequest.safeParse({ command: "cat", stdin: "" }).success);
    // Every padding length at the boundary: 1 MiB is 1 mod 3.
    for (const n of [MAX_EXEC_STDIN_BYTES - 2, MAX_EXEC_STDIN_BYTES - 1, MAX_EXEC_STDIN_BYTES]) assert.ok(ExecRequest.safeParse({ command: "cat", stdin: stdinOf(n) }).success, String(n));
    for (const n of [MAX_EXEC_STDIN_BYTES + 1, MAX_EXEC_STDIN_BYTES + 2, MAX_EXEC_STDIN_BYTES + 3]) {
      const r = ExecRequest.safeParse({ command: "cat", stdin: stdinOf(n) });
      assert.ok(!r.success, String(n));
      assert.match(r.error.issues[0]?.message ?? "", new RegExp(`over the limit of ${MAX_EXEC_STDIN_BYTES} bytes`));
    }
    assert.ok(!ExecRequest.safeParse({ command: "cat", stdin: "not base64!" }).success);
    assert.ok(!ExecRequest.safeParse({ command: "cat", stdin: "aGk" }).success, "unpadded");
  });

  it("/v5 uses the same limit", () => {
    assert.ok(V5ExecRequest.safeParse({ command: "cat", stdin: stdinOf(MAX_EXEC_STDIN_BYTES) }).success);
    for (const n of [MAX_EXEC_STDIN_BYTES + 1, MAX_EXEC_STDIN_BYTES + 2, MAX_EXEC_STDIN_BYTES + 3]) {
      assert.ok(!V5ExecRequest.safeParse({ command: "cat", stdin: stdinOf(n) }).success, String(n));
    }
  });
});

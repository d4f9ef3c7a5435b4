/** Pure unit tests: keys, migrations, paths, error mapping, config, PTY control frames. */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import { EngineError, ErrorCode } from "@capsule/engine";
import { openDb } from "../src/db.js";
import { ApiError, toApiError } from "../src/errors.js";
import { decodeContent, guestPath } from "../src/guest-path.js";
import { KeyStore } from "../src/keys.js";
import { resolveConfig } from "../src/config.js";
import { shq } from "@capsule/contract/shell";
import { statusFromExit } from "../src/shell.js";
import { apiState, sizingToLimits } from "../src/vm-service.js";
import { parseControl } from "../src/ws/pty.js";
import { badRequestCode, bearer } from "../src/app.js";
import { scratchDir } from "../test-support/harness.js";

describe("keys", () => {
  it("creates, authenticates, lists and revokes; stores only hashes", async () => {
    const dir = await scratchDir();
    try {
      const db = openDb(path.join(dir, "t.db"));
      const keys = new KeyStore(db);
      const { key, info } = keys.createKey("alice");
      assert.match(key, /^cap_[a-z0-9]{12}_[A-Za-z0-9_-]{43}$/);
      assert.equal(keys.authenticate(key)?.name, "alice");
      assert.equal(keys.authenticate(key.slice(0, -1) + (key.endsWith("A") ? "B" : "A")), undefined);
      assert.equal(keys.authenticate("garbage"), undefined);
      const stored = JSON.stringify(db.prepare("SELECT * FROM api_keys").all());
      // The secret is everything after `cap_<id>_` (base64url: it may itself hold `_`).
      const secret = key.slice("cap_".length + info.id.length + 1);
      assert.equal(secret.length, 43);
      assert.ok(!stored.includes(secret), "the secret is not stored");
      assert.equal(keys.listKeys().length, 1);
      assert.equal(keys.revokeKey(info.id), true);
      assert.equal(keys.revokeKey(info.id), false);
      assert.equal(keys.authenticate(key), undefined);
      assert.throws(() => keys.createKey("bad name!"));
      const version = db.pragma("user_version", { simple: true }) as number;
      assert.ok(version >= 2, "every migration ran");
      db.close();
      // migrations are idempotent across reopen
      const again = openDb(path.join(dir, "t.db"));
      assert.equal(again.pragma("user_version", { simple: true }), version);
      assert.equal(new KeyStore(again).listKeys()[0]?.revokedAt !== null, true);
      again.close();
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe("paths and content", () => {
  it("accepts absolute paths and rejects relative, NUL and .. paths", () => {
    assert.equal(guestPath("/root/a b#c?.txt"), "/root/a b#c?.txt");
    for (const bad of ["root/x", "", "/a/\0b", "/a/../etc/passwd", "/.."]) {
      assert.throws(() => guestPath(bad), (e: unknown) => e instanceof ApiError && e.code === "FILES_BAD_REQUEST");
    }
    assert.equal(guestPath("/a/..b/c..").length, 10);
  });
  it("decodes strict base64 and utf8", () => {
    assert.deepEqual(decodeContent("aGk=", "base64"), Buffer.from("hi"));
    assert.deepEqual(decodeContent("", undefined), Buffer.alloc(0));
    assert.deepEqual(decodeContent("hé", "utf8"), Buffer.from("hé"));
    assert.throws(() => decodeContent("not base64!", "base64"), /base64/);
    assert.throws(() => decodeContent("aGk", "base64"), /base64/);
    assert.throws(() => decodeContent("a===", "base64"), /base64/);
    assert.throws(() => decodeContent("ab=c", "base64"), /base64/);
    assert.equal(decodeContent("aGk=", "base64").toString(), "hi");
    assert.equal(decodeContent("", "base64").length, 0);
    // 1 MiB of base64 (the API fuzzer's find: the old regexp overflowed its stack here, a 500).
    assert.equal(decodeContent("eXl5".repeat(1 << 18), "base64").length, 3 << 18);
  });
});

describe("errors", () => {
  it("maps engine and agent errors to client codes and statuses", () => {
    const cases: Array<[EngineError, string, number]> = [
      [new EngineError(ErrorCode.VmNotFound, "x"), "VM_NOT_FOUND", 404],
      [new EngineError(ErrorCode.SnapshotNotFound, "x"), "SNAPSHOT_NOT_FOUND", 404],
      [new EngineError(ErrorCode.InvalidState, "x"), "VM_NOT_RUNNING", 400],
      [new EngineError(ErrorCode.ExecTimedOut, "x"), "EXEC_TIMED_OUT", 408],
      [new EngineError(ErrorCode.AgentError, "x", { agentCode: "FILE_NOT_FOUND" }), "FILE_NOT_FOUND", 404],
      [new EngineError(ErrorCode.AgentError, "x", { agentCode: "USER_NOT_FOUND" }), "USER_NOT_FOUND", 404],
      [new EngineError(ErrorCode.AgentError, "x", { agentCode: "SESSION_USER_MISMATCH" }), "SESSION_USER_MISMATCH", 403],
      [new EngineError(ErrorCode.AgentError, "x", { agentCode: "IS_A_DIRECTORY" }), "FILES_BAD_REQUEST", 400],
      [new EngineError(ErrorCode.RuntimeFailed, "x"), "INTERNAL_ERROR", 500],
      // An agent that hangs up mid-call (the agent fuzzer's find): this VM cannot serve now.
      [new EngineError(ErrorCode.AgentUnavailable, "agent closed the connection during fs.write"), "SERVICE_UNAVAILABLE", 503],
    ];
    for (const [err, code, status] of cases) {
      const api = toApiError(err, "FILES_BAD_REQUEST");
      assert.equal(api.code, code, err.code);
      assert.equal(api.status, status);
      assert.deepEqual(Object.keys(api.body()).sort(), [...Object.keys(api.extra), "code", "error", "message"].sort());
    }
    assert.equal(toApiError(new Error("boom")).code, "INTERNAL_ERROR");
    assert.equal(toApiError(new EngineError(ErrorCode.AgentUnavailable, "x")).body().reason, "AGENT_UNAVAILABLE");
    assert.equal(new ApiError("BAD_REQUEST", "x", 501).status, 501);
  });
  it("picks the route's bad-request code", () => {
    assert.equal(badRequestCode("POST", "/v1/vms"), "CREATE_VM_BAD_REQUEST");
    assert.equal(badRequestCode("PUT", "/v1/vms/abc/files/%2Fx"), "FILES_BAD_REQUEST");
    assert.equal(badRequestCode("POST", "/v1/vms/abc/exec-await"), "VALIDATION_ERROR");
  });
  it("reads bearer tokens", () => {
    assert.equal(bearer("Bearer abc"), "abc");
    assert.equal(bearer("bearer  abc "), "abc");
    assert.equal(bearer("Basic abc"), undefined);
    assert.equal(bearer(undefined), undefined);
  });
});

describe("mapping", () => {
  it("engine states to API states", () => {
    assert.equal(apiState("running", "running"), "running");
    assert.equal(apiState("stopped", "suspended"), "suspended");
    assert.equal(apiState("stopped", "running"), "suspended");
    assert.equal(apiState("stopped", "stopped"), "stopped");
    assert.equal(apiState("stopping", "suspended"), "suspending");
    assert.equal(apiState("creating", "running"), "starting");
    assert.equal(apiState("lost", "running"), "lost");
  });
  it("sizing to limits", () => {
    assert.deepEqual(sizingToLimits({}), {});
    assert.deepEqual(sizingToLimits({ vcpuCount: 2, memSizeGb: 4, rootfsSizeGb: 16 }), { cpus: 2, memoryMb: 4096, diskMb: 16384 });
  });
  it("exit statuses and shell quoting", () => {
    assert.equal(statusFromExit(3, null, { SIGKILL: 9 }), 3);
    assert.equal(statusFromExit(null, "SIGKILL", { SIGKILL: 9 }), 137);
    assert.equal(statusFromExit(null, null, {}), null);
    assert.equal(shq("it's"), `"it's"`); // @capsule/contract/shell; its unit test round-trips words through the real sh
  });
  it("PTY control frames", () => {
    assert.deepEqual(parseControl('{"type":"resize","cols":120,"rows":40}'), { type: "resize", cols: 120, rows: 40 });
    assert.deepEqual(parseControl('{"type":"signal","signal":"SIGINT"}'), { type: "signal", signal: "SIGINT" });
    for (const bad of ["nope", "null", '{"type":"resize","cols":0,"rows":5}', '{"type":"resize","cols":"80","rows":24}', '{"type":"x"}']) assert.equal(parseControl(bad), undefined);
  });
});

describe("config", () => {
  it("options over env over file over defaults", async () => {
    const dir = await scratchDir();
    try {
      await fs.writeFile(path.join(dir, "capsule.json"), JSON.stringify({ port: 9000, host: "0.0.0.0", logLevel: "debug" }));
      const c = resolveConfig({ dataDir: dir, host: "::1" }, { CAPSULE_PORT: "9100", CAPSULE_IDLE_TIMEOUT_SECONDS: "none" });
      assert.equal(c.port, 9100);
      assert.equal(c.host, "::1");
      assert.equal(c.logLevel, "debug");
      assert.equal(c.defaultIdleTimeoutSeconds, null);
      assert.equal(c.imagesDir, path.join(dir, "images"));
      assert.equal(resolveConfig({ dataDir: dir }, {}).defaultIdleTimeoutSeconds, 300);
      assert.throws(() => resolveConfig({ dataDir: dir }, { CAPSULE_EGRESS: "some" }));
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

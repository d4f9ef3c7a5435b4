/** Client configuration and errors that need no server. */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { Capsule, CapsuleError, ConfigError, ConnectionError, freestyle } from "@capsule/sdk";

describe("configuration", () => {
  it("names the missing environment variable", () => {
    const saved = { ...process.env };
    for (const k of ["CAPSULE_API_URL", "CAPSULE_API_KEY", "FREESTYLE_API_URL", "FREESTYLE_API_KEY"]) delete process.env[k];
    try {
      assert.throws(() => new Capsule(), (e: unknown) => e instanceof ConfigError && e.code === "CONFIG_MISSING" && /CAPSULE_API_URL/.test(e.message));
      assert.throws(() => new Capsule({ apiUrl: "http://127.0.0.1:1" }), (e: unknown) => e instanceof ConfigError && /CAPSULE_API_KEY/.test(e.message));
      process.env.FREESTYLE_API_URL = "http://127.0.0.1:1/";
      process.env.FREESTYLE_API_KEY = "k";
      assert.equal(new Capsule().apiUrl, "http://127.0.0.1:1");
    } finally {
      process.env = saved;
    }
  });

  it("the default instance is lazy, and an unreachable server is a NETWORK_ERROR with a hint", async () => {
    const c = new Capsule({ apiUrl: "http://127.0.0.1:9", apiKey: "k" });
    await assert.rejects(c.vms.list(), (e: unknown) => e instanceof ConnectionError && e.code === "NETWORK_ERROR" && /capsule serve/.test(e.message));
    assert.ok(freestyle); // importing did not read the environment
    assert.ok(new CapsuleError("VM_NOT_FOUND", "x").message.includes("capsule vm list"));
  });

  it("a server that accepts a call and never answers fails it after the idle timeout, with NETWORK_ERROR", async () => {
    const silent = http.createServer(() => undefined); // reads the request, never answers
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", () => r()));
    try {
      const c = new Capsule({ apiUrl: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`, apiKey: "k", idleTimeoutMs: 300 });
      await assert.rejects(c.vms.list(), (e: unknown) => e instanceof ConnectionError && e.code === "NETWORK_ERROR" && /sent nothing for 300 ms/.test(e.message));
    } finally {
      silent.closeAllConnections();
      await new Promise((r) => silent.close(r));
    }
  });
});

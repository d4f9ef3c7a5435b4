/**
 * Root in tenant A's VM replaces the agent's socket with a listener that answers `{bad`. Through
 * the real API server: the call gets a 5xx with a code the official client knows and Capsule's
 * `reason`; the server keeps serving, and tenant B's VM keeps working.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { turnHostile } from "@capsule/engine/test-support/hostile-agent";
import { client, rejectsWith } from "../test-support/client.js";
import { call, useServer } from "../test-support/harness.js";

describe("a hostile guest through the API", () => {
  const t = useServer();

  it("is a 503 SERVICE_UNAVAILABLE with reason AGENT_PROTOCOL_ERROR; the server and other tenants carry on", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { server, url, keyA, keyB } = t.get();
    const [a, b] = await Promise.all([call(url, keyA, "POST", "/v1/vms", { idleTimeoutSeconds: null }), call(url, keyB, "POST", "/v1/vms", { idleTimeoutSeconds: null })]);
    const vmA = a.body.id as string;
    const vmB = b.body.id as string;
    assert.ok(vmA && vmB, JSON.stringify([a.body, b.body]));
    await turnHostile(server.engine, vmA);

    const t0 = Date.now();
    const r = await call(url, keyA, "POST", `/v1/vms/${vmA}/exec-await`, { command: "bad-json" });
    assert.ok(Date.now() - t0 < 5_000, `took ${Date.now() - t0} ms`);
    assert.equal(r.status, 503, JSON.stringify(r.body));
    assert.equal(r.body.code, "SERVICE_UNAVAILABLE");
    assert.equal(r.body.reason, "AGENT_PROTOCOL_ERROR");
    assert.match(r.body.message ?? "", /broke the protocol/);

    // The official client throws its typed error, with Capsule's reason on .body.
    const err = await rejectsWith(client(url, keyA).vms.ref({ vmId: vmA }).exec("bad-json"), "ServiceUnavailableError", "SERVICE_UNAVAILABLE");
    assert.equal((err.body as { reason?: string }).reason, "AGENT_PROTOCOL_ERROR");

    // The server still serves, and tenant B's VM still works.
    assert.equal((await call(url, keyB, "GET", `/v1/vms/${vmB}`)).status, 200);
    const ok = await call(url, keyB, "POST", `/v1/vms/${vmB}/exec-await`, { command: "echo fine" });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.stdout, "fine\n");
    assert.equal((await client(url, keyB).vms.ref({ vmId: vmB }).exec("echo via-client")).stdout, "via-client\n");
  });
});

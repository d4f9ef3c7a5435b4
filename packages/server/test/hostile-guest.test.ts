/**
 * Root in tenant A's VM replaces the agent's socket with a listener that answers `{bad`. Through
 * the real API server: the call gets a 5xx with a code the official client knows and Capsule's
 * `reason`; the server keeps serving, and tenant B's VM keeps working.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { hostileListener, turnHostile } from "@capsule/engine/test-support/hostile-agent";
import { client, rejectsWith } from "../test-support/client.js";
import { call, createKey, destroyDataDir, sandboxGap, scratchDir, spawnServer, useServer } from "../test-support/harness.js";

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

  it("a server killed while a hostile VM runs comes back, serves, and reports that VM lost", async (ctx) => {
    const gap = await sandboxGap();
    if (gap) return ctx.skip(gap);
    const dataDir = await scratchDir();
    const keyA = createKey(dataDir, "alice");
    const keyB = createKey(dataDir, "bob");
    let srv = await spawnServer(dataDir);
    const kill = async () => {
      if (srv.child.exitCode !== null || srv.child.signalCode !== null) return;
      const gone = new Promise((r) => srv.child.once("exit", r));
      srv.child.kill("SIGKILL");
      await gone;
    };
    try {
      const vmA = (await call(srv.url, keyA, "POST", "/v1/vms", {})).body.id as string;
      const vmB = (await call(srv.url, keyB, "POST", "/v1/vms", {})).body.id as string;
      // Root in A's VM, through the API: the hostile listener takes the agent's socket.
      const { path, script, start } = hostileListener();
      const put = await call(srv.url, keyA, "PUT", `/v1/vms/${vmA}/files/${encodeURIComponent(path)}`, { content: Buffer.from(script).toString("base64"), encoding: "base64" });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      const started = await call(srv.url, keyA, "POST", `/v1/vms/${vmA}/exec-await`, { command: start });
      assert.equal(started.body.statusCode, 0, JSON.stringify(started.body));

      await kill();
      srv = await spawnServer(dataDir); // start-up recovery talks to A's "agent" and must not be stopped by it
      const a = await call(srv.url, keyA, "GET", `/v1/vms/${vmA}`);
      assert.equal(a.body.state, "lost", JSON.stringify(a.body));
      assert.match(String(a.body.lostReason), /protocol 999/);
      const b = await call(srv.url, keyB, "POST", `/v1/vms/${vmB}/exec-await`, { command: "echo after-restart" });
      assert.equal(b.body.stdout, "after-restart\n", JSON.stringify(b.body));
      // The lost VM starts again on a real agent.
      const restarted = await call(srv.url, keyA, "POST", `/v1/vms/${vmA}/start`, {});
      assert.equal(restarted.status, 200, JSON.stringify(restarted.body));
      const again = await call(srv.url, keyA, "POST", `/v1/vms/${vmA}/exec-await`, { command: "echo real-agent" });
      assert.equal(again.body.stdout, "real-agent\n", JSON.stringify(again.body));
    } finally {
      await kill();
      await destroyDataDir(dataDir);
    }
  });
});

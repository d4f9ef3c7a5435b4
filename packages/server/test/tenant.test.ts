/** Raw HTTP and WebSocket checks the client cannot express: tenant isolation, bad input, the exec stream. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { call, useServer } from "../test-support/harness.js";
import { connect, waitForMessages, wsUrl } from "../test-support/ws-client.js";

describe("raw API", () => {
  const t = useServer();

  it("key B gets 404 on every route of key A's VM, snapshot and PTY session", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, keyB } = t.get();
    const vm = (await call(url, keyA, "POST", "/v1/vms", { idleTimeoutSeconds: null })).body.id as string;
    await call(url, keyA, "PUT", `/v1/vms/${vm}/files/%2Froot%2Fsecret`, { content: Buffer.from("A's").toString("base64"), encoding: "base64" });
    const snap = (await call(url, keyA, "POST", `/v1/vms/${vm}/snapshot`, {})).body.snapshotId as string;
    const pty = await connect(wsUrl(url, `/v1/vms/${vm}/pty?cols=80&rows=24`), keyA);
    await waitForMessages(pty, (m) => m.length > 0);
    assert.equal(pty.messages[0]?.binary, false, "sessionInfo comes first");
    const info = JSON.parse(String(pty.messages[0]?.data)) as { type: string; sessionId: string };
    assert.equal(info.type, "sessionInfo");
    pty.ws?.close();
    const sid = info.sessionId;

    const routes: Array<[string, string, unknown?]> = [
      ["GET", `/v1/vms/${vm}`],
      ["POST", `/v1/vms/${vm}/start`, {}],
      ["POST", `/v1/vms/${vm}/stop`],
      ["POST", `/v1/vms/${vm}/suspend`],
      ["POST", `/v1/vms/${vm}/kill`],
      ["POST", `/v1/vms/${vm}/await`],
      ["POST", `/v1/vms/${vm}/optimize`],
      ["POST", `/v1/vms/${vm}/exec-await`, { command: "cat /root/secret", terminal: null, timeoutMs: null }],
      ["GET", `/v1/vms/${vm}/files/%2Froot%2Fsecret`],
      ["PUT", `/v1/vms/${vm}/files/%2Froot%2Fsecret`, { content: "", encoding: "base64" }],
      ["POST", `/v1/vms/${vm}/snapshot`, {}],
      ["POST", `/v1/vms/${vm}/fork`, {}],
      ["GET", `/v1/vms/${vm}/pty/sessions`],
      ["DELETE", `/v1/vms/${vm}/pty/sessions/${sid}`],
      ["POST", `/v1/vms/${vm}/watch-files`],
      ["DELETE", `/v1/vms/${vm}`],
    ];
    for (const [m, p, body] of routes) {
      const r = await call(url, keyB, m, p, body);
      assert.equal(r.status, 404, `${m} ${p}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, "VM_NOT_FOUND", `${m} ${p}`);
    }
    for (const [m, p, body] of [["GET", `/v1/vms/snapshots/${snap}`], ["PATCH", `/v1/vms/snapshots/${snap}`, { name: "x" }], ["DELETE", `/v1/vms/snapshots/${snap}`]] as const) {
      const r = await call(url, keyB, m, p, body);
      assert.equal(r.status, 404, `${m} ${p}`);
      assert.equal(r.body.code, "SNAPSHOT_NOT_FOUND");
    }
    assert.equal((await call(url, keyB, "POST", "/v1/vms", { snapshotId: snap })).body.code, "SNAPSHOT_NOT_FOUND");
    for (const p of [`/v1/vms/${vm}/pty?cols=80&rows=24`, `/v1/vms/${vm}/pty/sessions/${sid}?cols=80&rows=24`, `/v1/vms/${vm}/exec-stream?command=id`]) {
      const r = await connect(wsUrl(url, p), keyB);
      assert.equal(r.status, 404, p);
      assert.equal(r.body?.code, "VM_NOT_FOUND");
    }
    assert.deepEqual((await call(url, keyB, "GET", "/v1/vms")).body.vms, []);
    assert.deepEqual((await call(url, keyB, "GET", "/v1/vms/snapshots")).body.snapshots, []);

    // A's things are untouched
    const still = await call(url, keyA, "POST", `/v1/vms/${vm}/exec-await`, { command: "cat /root/secret" });
    assert.equal(still.body.stdout, "A's");
    assert.equal((await call(url, keyA, "GET", `/v1/vms/${vm}`)).body.state, "running");
    const sessions = (await call(url, keyA, "GET", `/v1/vms/${vm}/pty/sessions`)).body.sessions as Array<{ sessionId: string; running: boolean }>;
    assert.ok(sessions.some((s) => s.sessionId === sid && s.running));
    assert.equal((await call(url, keyA, "GET", `/v1/vms/snapshots/${snap}`)).status, 200);
    assert.equal((await call(url, keyA, "DELETE", `/v1/vms/${vm}`)).status, 200);
    assert.equal((await call(url, keyA, "DELETE", `/v1/vms/snapshots/${snap}`)).status, 200);
    const unauth = await connect(wsUrl(url, `/v1/vms/${vm}/pty`), "wrong");
    assert.equal(unauth.status, 401);
    assert.equal(unauth.body?.code, "UNAUTHORIZED");
  });

  it("bad input on a real VM: clear 4xx, nothing changed", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const vm = (await call(url, keyA, "POST", "/v1/vms", { idleTimeoutSeconds: null })).body.id as string;
    try {
      const before = (await call(url, keyA, "POST", `/v1/vms/${vm}/exec-await`, { command: "ls -A /tmp | wc -l" })).body.stdout;
      const vmsBefore = (await call(url, keyA, "GET", "/v1/vms")).body.totalCount;
      const cases: Array<[string, string, unknown, number, string]> = [
        ["POST", `/v1/vms/${vm}/exec-await`, { command: "" }, 400, "VALIDATION_ERROR"],
        ["POST", `/v1/vms/${vm}/exec-await`, "{nope", 400, "VALIDATION_ERROR"],
        ["POST", `/v1/vms/${vm}/exec-await`, { command: "id", timeoutMs: "soon" }, 400, "VALIDATION_ERROR"],
        ["PUT", `/v1/vms/${vm}/files/tmp%2Frel`, { content: "aGk=", encoding: "base64" }, 400, "FILES_BAD_REQUEST"],
        ["PUT", `/v1/vms/${vm}/files/%2Ftmp%2F..%2Fetc%2Fevil`, { content: "aGk=", encoding: "base64" }, 400, "FILES_BAD_REQUEST"],
        ["PUT", `/v1/vms/${vm}/files/%2Ftmp%2Fa%00b`, { content: "aGk=", encoding: "base64" }, 400, "FILES_BAD_REQUEST"],
        ["PUT", `/v1/vms/${vm}/files/%2Ftmp%2Fx`, { content: 5 }, 400, "FILES_BAD_REQUEST"],
        ["GET", `/v1/vms/${vm}/files/%2Fno%2Fsuch`, undefined, 404, "FILE_NOT_FOUND"],
        ["POST", "/v1/vms", { template: { baseImage: { dockerfileContent: "FROM x" } } }, 501, "BAD_REQUEST"],
        ["POST", "/v1/vms", { template: { memSizeGb: 0.01 } }, 400, "CREATE_VM_BAD_REQUEST"],
        ["POST", `/v1/vms/${vm}/fork`, { count: 0 }, 400, "VALIDATION_ERROR"],
      ];
      for (const [m, p, body, status, code] of cases) {
        const r = await call(url, keyA, m, p, body);
        assert.equal(r.status, status, `${m} ${p} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.code, code);
        assert.ok(typeof r.body.message === "string" && r.body.message.length > 0);
      }
      assert.equal((await call(url, keyA, "POST", `/v1/vms/${vm}/exec-await`, { command: "ls -A /tmp | wc -l" })).body.stdout, before);
      assert.equal((await call(url, keyA, "GET", "/v1/vms")).body.totalCount, vmsBefore, "no VM was created by the rejected creates");
    } finally {
      await call(url, keyA, "DELETE", `/v1/vms/${vm}`);
    }
  });

  it("exec stream: stdin, EOF, stdout/stderr, exit code, kill", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const vm = (await call(url, keyA, "POST", "/v1/vms", { idleTimeoutSeconds: null })).body.id as string;
    try {
      const run = async (command: string, drive: (ws: import("ws").WebSocket) => void) => {
        const r = await connect(wsUrl(url, `/v1/vms/${vm}/exec-stream?command=${encodeURIComponent(command)}`), keyA);
        const ws = r.ws;
        assert.ok(ws);
        const closed = new Promise<number>((res) => ws.once("close", res));
        drive(ws);
        const code = await closed;
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        const texts: Array<{ type: string; exitCode?: number | null }> = [];
        for (const { data, binary } of r.messages) {
          if (!binary) texts.push(JSON.parse(String(data)) as { type: string });
          else (data[0] === 1 ? out : err).push(data.subarray(1));
        }
        return { stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), texts, code };
      };
      const cat = await run("sha256sum; echo bye >&2; exit 4", (ws) => {
        ws.send(Buffer.from("hello "));
        ws.send(Buffer.from("world"));
        ws.send(JSON.stringify({ type: "eof" }));
      });
      assert.match(cat.stdout, /^b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9/);
      assert.equal(cat.stderr, "bye\n");
      assert.equal(cat.texts[0]?.type, "started");
      assert.deepEqual(cat.texts.at(-1), { type: "exit", exitCode: 4, signal: null, timedOut: false });
      assert.equal(cat.code, 1000);
      const killed = await run("sleep 60", (ws) => setTimeout(() => ws.send(JSON.stringify({ type: "kill" })), 300));
      assert.equal(killed.texts.at(-1)?.exitCode, 137);
    } finally {
      await call(url, keyA, "DELETE", `/v1/vms/${vm}`);
    }
  });
});

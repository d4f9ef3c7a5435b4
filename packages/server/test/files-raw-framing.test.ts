/**
 * A download's body matches its Content-Length even when the file reads longer than its stat
 * (/proc files stat as 0 bytes). Before, the extra guest bytes went onto the connection after the
 * response, and the next request on that keep-alive connection read them as its answer (the API
 * fuzzer's find: "Parse Error: Expected HTTP/"). And its `Range` (206, 416, 400), over plain HTTP.
 */
import assert from "node:assert/strict";
import http from "node:http";
import { describe, it } from "node:test";
import { call, useServer } from "../test-support/harness.js";

type Got = { status: number; length: string | undefined; contentRange: string | undefined; body: Buffer };

function get(agent: http.Agent, url: string, key: string, p: string, headers: Record<string, string> = {}): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = http.get(url + p, { agent, headers: { authorization: `Bearer ${key}`, ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, length: res.headers["content-length"], contentRange: res.headers["content-range"], body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
  });
}

describe("files-raw framing", () => {
  const t = useServer();
  let vm: string | undefined;

  it("cuts a file that reads longer than its size at its Content-Length; the connection stays usable", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    vm = (await call(url, keyA, "POST", "/v1/vms", { idleTimeoutSeconds: null })).body.id as string;
    assert.ok(vm);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let i = 0; i < 3; i++) {
        const r = await get(agent, url, keyA, `/v1/vms/${vm}/files-raw/${encodeURIComponent("/proc/self/environ")}`);
        assert.equal(r.status, 200);
        assert.equal(String(r.body.length), r.length);
        const ok = await get(agent, url, keyA, `/v1/vms/${vm}/files-raw/${encodeURIComponent("/etc/hostname")}`);
        assert.equal(ok.status, 200);
        assert.equal(String(ok.body.length), ok.length);
        assert.ok(ok.body.length > 0);
      }
    } finally {
      agent.destroy();
    }
  });

  it("Range: 206 with Content-Range for each form, as root and as a user; 416 past the end; 400 malformed or several", async (ctx) => {
    if (t.skip() || !vm) return ctx.skip(String(t.skip() || "no VM"));
    const { url, keyA } = t.get();
    const setup = await call(url, keyA, "POST", `/v1/vms/${vm}/exec-await`, { command: "printf 0123456789 > /tmp/digits && chmod 644 /tmp/digits && useradd -m rita" });
    assert.equal(setup.body.statusCode, 0, JSON.stringify(setup.body));
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const path = `/v1/vms/${vm}/files-raw/${encodeURIComponent("/tmp/digits")}`;
    try {
      for (const user of [{}, { "x-freestyle-vm-linux-user-id": "rita" }] as Array<Record<string, string>>) {
        const cases: Array<[string, string, string]> = [
          ["bytes=2-5", "2345", "bytes 2-5/10"],
          ["bytes=7-", "789", "bytes 7-9/10"],
          ["bytes=-3", "789", "bytes 7-9/10"],
          ["bytes=8-100", "89", "bytes 8-9/10"],
          ["bytes=-50", "0123456789", "bytes 0-9/10"],
        ];
        for (const [range, body, contentRange] of cases) {
          const r = await get(agent, url, keyA, path, { range, ...user });
          assert.deepEqual({ status: r.status, body: r.body.toString(), contentRange: r.contentRange, length: r.length }, { status: 206, body, contentRange, length: String(body.length) }, `${range} ${JSON.stringify(user)}`);
        }
        const whole = await get(agent, url, keyA, path, user);
        assert.deepEqual({ status: whole.status, body: whole.body.toString(), contentRange: whole.contentRange }, { status: 200, body: "0123456789", contentRange: undefined });
      }
      for (const range of ["bytes=10-", "bytes=10-20", "bytes=-0"]) {
        const r = await get(agent, url, keyA, path, { range });
        assert.equal(r.status, 416, range);
        assert.deepEqual(pick(JSON.parse(r.body.toString())), { code: "FILES_BAD_REQUEST", reason: "RANGE_NOT_SATISFIABLE" }, range);
      }
      for (const range of ["bytes=5-2", "bytes=0-1,4-5", "items=0-1", "bytes=-"]) {
        const r = await get(agent, url, keyA, path, { range });
        assert.equal(r.status, 400, range);
        assert.equal(JSON.parse(r.body.toString()).code, "FILES_BAD_REQUEST", range);
      }
      // Still one usable connection after every refusal.
      assert.equal((await get(agent, url, keyA, path, { range: "bytes=0-0" })).body.toString(), "0");
    } finally {
      agent.destroy();
    }
  });
});

function pick(b: { code?: unknown; reason?: unknown }): { code: unknown; reason: unknown } {
  return { code: b.code, reason: b.reason };
}

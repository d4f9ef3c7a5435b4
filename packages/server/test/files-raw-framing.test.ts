/**
 * A download's body matches its Content-Length even when the file reads longer than its stat
 * (/proc files stat as 0 bytes). Before, the extra guest bytes went onto the connection after the
 * response, and the next request on that keep-alive connection read them as its answer (the API
 * fuzzer's find: "Parse Error: Expected HTTP/").
 */
import assert from "node:assert/strict";
import http from "node:http";
import { describe, it } from "node:test";
import { call, useServer } from "../test-support/harness.js";

function get(agent: http.Agent, url: string, key: string, p: string): Promise<{ status: number; length: string | undefined; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url + p, { agent, headers: { authorization: `Bearer ${key}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, length: res.headers["content-length"], body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
  });
}

describe("files-raw framing", () => {
  const t = useServer();

  it("cuts a file that reads longer than its size at its Content-Length; the connection stays usable", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const vm = (await call(url, keyA, "POST", "/v1/vms", { idleTimeoutSeconds: null })).body.id as string;
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
});

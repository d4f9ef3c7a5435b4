/**
 * Requests Node's HTTP parser refuses still get the API's `{code, message}` body: headers over
 * the limit (431) and a malformed request line (400). Before, Node answered a bare status line
 * (found by the API fuzzer: a WebSocket upgrade with a long query and a long Authorization header).
 *
 * An answer given before the request's body was read first reads the rest of the body: a
 * keep-alive client would otherwise send its next request on a socket the server drops 500 ms
 * later, and see a hang-up with no answer (found by the API fuzzer, about 1 request in 20,000).
 */
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { describe, it } from "node:test";
import { isApiErrorCode } from "@capsule/contract/errors";
import { useServer } from "../test-support/harness.js";

function raw(url: string, request: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(u.port), u.hostname, () => s.end(request));
    let out = "";
    s.on("data", (d: Buffer) => (out += d.toString("latin1")));
    s.on("close", () => resolve(out));
    s.on("error", reject);
  });
}

describe("requests the HTTP parser refuses", () => {
  const t = useServer();

  for (const [name, request, status] of [
    ["headers over the limit", `GET /v1/vms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${"k".repeat(20_000)}\r\n\r\n`, 431],
    ["a malformed request line", "BLAH\r\n\r\n", 400],
  ] as const) {
    it(`answers ${status} with a registry error body: ${name}`, async (ctx) => {
      if (t.skip()) return ctx.skip(String(t.skip()));
      const answer = await raw(t.get().url, request);
      assert.match(answer, new RegExp(`^HTTP/1.1 ${status} `));
      const body = JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)) as { code: string; message: string };
      assert.ok(isApiErrorCode(body.code), answer);
      assert.equal(typeof body.message, "string");
    });
  }

  it("an answer before the body was read keeps the connection usable: a keep-alive client's next request on it is answered", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const u = new URL(t.get().url);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      // A bad key, so the body is never read; its last bytes come 1 s after the first, longer than
      // @hono/node-server's own drain waits before it closes the socket.
      const first = await new Promise<number>((resolve, reject) => {
        const req = http.request({ host: u.hostname, port: u.port, method: "POST", path: "/v1/vms", agent, headers: { authorization: "Bearer nope", "content-type": "application/json", "content-length": String(2 << 20) } }, (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        });
        req.on("error", reject);
        req.write(Buffer.alloc(1 << 20, 0x20));
        setTimeout(() => req.end(Buffer.alloc(1 << 20, 0x20)), 1000);
      });
      assert.equal(first, 401);
      const second = await new Promise<{ status: number; reused: boolean }>((resolve, reject) => {
        const req = http.request({ host: u.hostname, port: u.port, method: "GET", path: "/healthz", agent }, (res) => {
          res.resume();
          res.on("end", () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket }));
        });
        req.on("error", reject);
        req.end();
      });
      assert.deepEqual(second, { status: 200, reused: true });
    } finally {
      agent.destroy();
    }
  });
});

/**
 * Requests Node's HTTP parser refuses still get the API's `{code, message}` body: headers over
 * the limit (431) and a malformed request line (400). Before, Node answered a bare status line
 * (found by the API fuzzer: a WebSocket upgrade with a long query and a long Authorization header).
 */
import assert from "node:assert/strict";
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
});

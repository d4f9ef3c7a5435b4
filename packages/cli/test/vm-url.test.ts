/** `capsule vm url` against a real server: the preview URL, and a share link that the proxy takes (a redirect setting the host's cookie). */
import assert from "node:assert/strict";
import http from "node:http";
import { describe, it } from "node:test";
import { parseTtl } from "../src/commands/vm-url.js";
import { capsule, useServer } from "../test-support/cli.js";

describe("capsule vm url", () => {
  const t = useServer();

  it("share durations", () => {
    assert.deepEqual(["90", "30s", "15m", "2h", "7d"].map(parseTtl), [90, 30, 900, 7200, 604800]);
    for (const bad of ["", "1w", "-5m", "1.5h", "h"]) assert.throws(() => parseTtl(bad), /--share takes a duration/, bad);
  });

  it("prints the preview URL, or a share link the proxy accepts", { timeout: 60_000 }, async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const run = (args: string[]) => capsule(args, { url, key: keyA });
    const vmId = (await run(["vm", "create", "--idle-timeout", "none"])).stdout.trim();
    const port = new URL(url).port;
    const plain = await run(["vm", "url", vmId, "5173"]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(plain.stdout, `http://5173-${vmId}.localhost:${port}/\n`);
    const shared = await run(["vm", "url", vmId, "5173", "--share", "10m"]);
    assert.equal(shared.code, 0, shared.stderr);
    const link = new URL(shared.stdout.trim());
    assert.equal(link.host, `5173-${vmId}.localhost:${port}`);
    assert.match(shared.stderr, /^share [a-z0-9]{16} expires /);
    const answer = await new Promise<http.IncomingMessage>((resolve, reject) => {
      http.get({ host: "127.0.0.1", port, path: `${link.pathname}${link.search}`, headers: { host: link.host } }, resolve).on("error", reject);
    });
    answer.resume();
    assert.equal(answer.statusCode, 302, "the link is taken: a redirect without the token");
    assert.equal(answer.headers.location, "/");
    assert.match(String(answer.headers["set-cookie"]), /^capsule_preview=.*HttpOnly; SameSite=Lax/);
    // The port's live links by id, and one revoked by it.
    const id = /^share ([a-z0-9]{16})/.exec(shared.stderr)?.[1] as string;
    const listed = await run(["vm", "url", vmId, "5173", "--shares"]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, new RegExp(`^${id}\t\\d{4}-`));
    assert.equal((await run(["vm", "url", vmId, "5173", "--revoke", id])).code, 0);
    assert.equal((await run(["vm", "url", vmId, "5173", "--shares"])).stdout, "", "no live link left");
    assert.equal((await run(["vm", "url", vmId, "5173", "--revoke", id])).code !== 0, true, "a revoked link is not revoked twice");
    assert.equal((await run(["vm", "url", vmId, "70000"])).code !== 0, true);
    assert.equal((await run(["vm", "delete", vmId])).code, 0);
  });
});

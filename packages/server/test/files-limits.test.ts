/**
 * The files API's read limit applies to the bytes actually read: a symlink (whose own size is
 * tiny) to a huge sparse file answers 413 without the server buffering the target.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { call, useServer } from "../test-support/harness.js";

describe("files API limits", () => {
  const t = useServer();

  it("a symlink to a 50 GB sparse file is refused with 413, and the server does not buffer it", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const vm = (await call(url, keyA, "POST", "/v1/vms", { idleTimeoutSeconds: null })).body.id as string;
    const setup = await call(url, keyA, "POST", `/v1/vms/${vm}/exec-await`, {
      command: "truncate -s 50G /big && ln -s /big /link && printf small-target > /small && ln -s /small /small-link && stat -c %s /link /big",
    });
    assert.equal(setup.body.statusCode, 0, JSON.stringify(setup.body));

    const rssBefore = process.memoryUsage().rss;
    const big = await call(url, keyA, "GET", `/v1/vms/${vm}/files/${encodeURIComponent("/link")}`);
    assert.equal(big.status, 413, JSON.stringify(big.body));
    assert.equal(big.body.code, "FILES_BAD_REQUEST");
    assert.match(String(big.body.message), /reads up to \d+ bytes/);
    const grown = process.memoryUsage().rss - rssBefore;
    assert.ok(grown < 256 * 1024 * 1024, `server memory grew by ${Math.round(grown / 1048576)} MiB reading a refused file`);

    // A symlink to a small file still reads its target.
    const small = await call(url, keyA, "GET", `/v1/vms/${vm}/files/${encodeURIComponent("/small-link")}`);
    assert.equal(small.status, 200, JSON.stringify(small.body));
    assert.equal(Buffer.from(String(small.body.content), "base64").toString(), "small-target");
    // The VM keeps serving afterwards.
    const after = await call(url, keyA, "POST", `/v1/vms/${vm}/exec-await`, { command: "echo still-here" });
    assert.equal(after.body.stdout, "still-here\n");
    await call(url, keyA, "DELETE", `/v1/vms/${vm}`);
  });
});

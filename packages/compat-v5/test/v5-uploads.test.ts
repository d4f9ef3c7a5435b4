/**
 * The v5 chunked, resumable upload through the official `freestyle@0.2.17` client (its
 * `fs.writeFile` of more than 8 MiB), on real sandboxes: a 50 MB round trip with equal sha256, a
 * chunk cut off half-way by the client and resumed, a tampered sha256 refused with the old file
 * kept; and a hostile tenant's requests (gaps, overlaps, replays, a chunk past the declared size,
 * another account's upload, too many uploads, one never finished) answered `{code, message}`;
 * and a server that stops with an upload under way (a chunk stored, the next one mid-body) leaves
 * nothing of it in the VM's disk.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, it } from "node:test";
import type { Freestyle } from "freestyle";
import { createKey, destroyDataDir, scratchDir, spawnServer, useServer } from "@capsule/server/test-support";
import type { UploadStatus } from "@capsule/contract/v5";
import { assertResumedOnce, client, meddlingFetch, NOTHING, rejectsApi, sha256 } from "../test-support/v5.js";

const MiB = 1024 * 1024;
/** Where the server keeps a VM's chunks (routes/v5/upload-sessions.ts). */
const UPLOAD_ROOT = "/var/tmp/.capsule-uploads";
/** The test server's upload idle expiry. */
const IDLE_MS = 3_000;

describe("official client 0.2.17: the chunked, resumable upload", () => {
  const t = useServer({ limits: { maxUploadSessionsPerAccount: 3, uploadIdleMs: IDLE_MS } });

  it("50 MB round trip with equal sha256; a chunk cut half-way is resumed; a tampered sha256 keeps the old file", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const fs = client(url, keyA);
    const { vm, vmId } = await fs.vms.create({ firewall: NOTHING });
    try {
      const big = randomBytes(50 * 1000 * 1000);
      const progress: number[] = [];
      const started = Date.now();
      await vm.fs.writeFile("/root/big.bin", big, { mode: 0o640, onProgress: (p) => progress.push(p.completedBytes) });
      ctx.diagnostic(`50 MB through the resumable upload (16 MiB chunks): ${Date.now() - started} ms`);
      assert.deepEqual(progress, [16 * MiB, 32 * MiB, big.length], "chunks of 16 MiB");
      assert.equal(sha256(await vm.fs.readFile("/root/big.bin")), sha256(big));
      assert.equal((await vm.exec("sha256sum /root/big.bin")).stdout?.split(" ")[0], sha256(big), "the guest has the same bytes");
      assert.equal((await vm.fs.stat("/root/big.bin")).permissions, "0640");
      assert.equal((await vm.exec(`ls -A ${UPLOAD_ROOT}`)).stdout, "", "the chunks are gone after the commit");

      // The second chunk's request is cut half-way; the client asks where the upload stands and resends it.
      const cutter = meddlingFetch({ cutChunkAt: 4 * MiB });
      const interrupted = client(url, keyA, cutter.fetch);
      const file = randomBytes(10 * MiB + 17);
      await interrupted.vms.ref(vmId).fs.writeFile("/root/resumed.bin", file, { chunkSize: 4 * MiB });
      assertResumedOnce(cutter.calls(), 4 * MiB, [0, 4 * MiB, 8 * MiB]);
      assert.equal(sha256(await vm.fs.readFile("/root/resumed.bin")), sha256(file));
      assert.equal((await vm.fs.stat("/root/resumed.bin")).permissions, "0600", "a new file without a mode is 0o600");
      assert.equal((await vm.exec(`ls -A ${UPLOAD_ROOT}; ls -A /root | grep -c capsule-write || true`)).stdout, "0\n", "nothing left of the cut chunk");

      // A sha256 that is not the file's: refused at the commit, the old file kept, the chunks removed.
      const tamper = meddlingFetch({ tamperSha256: true });
      const lying = client(url, keyA, tamper.fetch);
      const err = await rejectsApi(lying.vms.ref(vmId).fs.writeFile("/root/big.bin", randomBytes(9 * MiB)), 400, "FILES_BAD_REQUEST");
      assert.match(err.message, /sha256/);
      assert.deepEqual(tamper.log.map((e) => `${e.method} ${e.status}`).slice(-2), ["POST 400", "DELETE 404"], "the commit is refused; the client's abort finds the upload ended");
      assert.equal(sha256(await vm.fs.readFile("/root/big.bin")), sha256(big), "the old file is kept");
      assert.equal((await vm.exec(`ls -A ${UPLOAD_ROOT}; ls -A /root | grep -c capsule-write || true`)).stdout, "0\n");
    } finally {
      await vm.delete();
    }
  });

  it("a hostile tenant's requests answer {code, message}: gaps, overlaps, past the size, another account's upload, caps, expiry", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, keyB } = t.get();
    const alice = client(url, keyA);
    const bob = client(url, keyB);
    const call = async (who: Freestyle, path: string, init: RequestInit = {}) => {
      const r = await who.fetch(path, init);
      const text = await r.text();
      return { status: r.status, body: (text ? JSON.parse(text) : undefined) as (UploadStatus & { code: string; message: string; reason?: string }) | undefined };
    };
    const json = (body: unknown): RequestInit => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const put = (bytes: Uint8Array | string): RequestInit => ({ method: "PUT", headers: { "content-type": "application/octet-stream" }, body: bytes });
    const expectError = (r: Awaited<ReturnType<typeof call>>, status: number, code: string, reason?: string) => {
      assert.equal(r.status, status, JSON.stringify(r.body));
      assert.equal(r.body?.code, code, JSON.stringify(r.body));
      assert.ok((r.body?.message.length ?? 0) > 10, JSON.stringify(r.body));
      if (reason) assert.equal(r.body?.reason, reason, JSON.stringify(r.body));
    };

    const a = await alice.vms.create({ firewall: NOTHING });
    const b = await bob.vms.create({ firewall: NOTHING });
    try {
      const base = `/v5/vms/${a.vmId}/fs/uploads`;
      await rejectsApi(a.vm.fs.writeFile("relative.bin", randomBytes(9 * MiB)), 400, "FILES_BAD_REQUEST");
      expectError(await call(alice, base, json({ path: "/root/x", size: 17 * 1024 ** 3 })), 400, "FILES_BAD_REQUEST");
      expectError(await call(alice, base, json({ path: "/root/x", size: 10, mode: 0o10000 })), 400, "FILES_BAD_REQUEST");

      const open = await call(alice, base, json({ path: "/root/x.bin", size: 10 }));
      assert.equal(open.status, 200);
      assert.deepEqual(open.body, { uploadId: open.body?.uploadId, path: "/root/x.bin", size: 10, receivedBytes: 0 });
      const up = `${base}/${open.body?.uploadId}`;
      expectError(await call(alice, `${up}?offset=4`, put("abcd")), 409, "FILES_BAD_REQUEST", "OFFSET_MISMATCH");
      expectError(await call(alice, `${up}?offset=0`, put("0123456789ABC")), 400, "FILES_BAD_REQUEST", "CHUNK_PAST_SIZE");
      expectError(await call(alice, `${up}?offset=0`, put("")), 400, "FILES_BAD_REQUEST", "EMPTY_CHUNK");
      expectError(await call(alice, `${up}?offset=-1`, put("a")), 400, "FILES_BAD_REQUEST");
      assert.equal((await call(alice, `${up}?offset=0`, put("0123"))).body?.receivedBytes, 4);
      expectError(await call(alice, `${up}?offset=0`, put("0123")), 409, "FILES_BAD_REQUEST", "OFFSET_MISMATCH"); // a replay
      expectError(await call(alice, `${up}?offset=2`, put("23456")), 409, "FILES_BAD_REQUEST", "OFFSET_MISMATCH"); // an overlap
      expectError(await call(alice, `${up}/commit`, json({})), 409, "FILES_BAD_REQUEST", "UPLOAD_INCOMPLETE");
      // Bob: Alice's VM is not his (404 VM_NOT_FOUND), and her upload id on his own VM is no upload of his.
      expectError(await call(bob, `${up}?offset=4`, put("456789")), 404, "VM_NOT_FOUND");
      const stolen = `/v5/vms/${b.vmId}/fs/uploads/${open.body?.uploadId}`;
      expectError(await call(bob, stolen), 404, "SESSION_NOT_FOUND", "UPLOAD_NOT_FOUND");
      expectError(await call(bob, `${stolen}?offset=4`, put("456789")), 404, "SESSION_NOT_FOUND");
      expectError(await call(bob, `${stolen}/commit`, json({})), 404, "SESSION_NOT_FOUND");
      expectError(await call(bob, stolen, { method: "DELETE" }), 404, "SESSION_NOT_FOUND");
      assert.equal((await call(alice, up)).body?.receivedBytes, 4, "untouched by all of that");
      assert.equal((await call(alice, `${up}?offset=4`, put("456789"))).body?.receivedBytes, 10);
      expectError(await call(alice, `${up}?offset=10`, put("x")), 400, "FILES_BAD_REQUEST", "CHUNK_PAST_SIZE");
      assert.equal((await call(alice, `${up}/commit`, json({}))).status, 204);
      assert.equal(await a.vm.fs.readTextFile("/root/x.bin"), "0123456789");
      expectError(await call(alice, up), 404, "SESSION_NOT_FOUND");

      // At most 3 open uploads per account (this server's limit); an unused one expires and takes its chunks with it.
      const opened: string[] = [];
      for (let i = 0; i < 3; i++) opened.push(String((await call(alice, base, json({ path: `/root/n${i}`, size: 5 }))).body?.uploadId));
      expectError(await call(alice, base, json({ path: "/root/n3", size: 5 })), 429, "SESSION_CAP_REACHED", "UPLOAD_SESSIONS");
      assert.equal((await call(bob, `/v5/vms/${b.vmId}/fs/uploads`, json({ path: "/root/n", size: 5 }))).status, 200, "the cap is per account");
      assert.equal((await call(alice, `${base}/${opened[0]}?offset=0`, put("ab"))).status, 200);
      assert.equal((await a.vm.exec(`ls ${UPLOAD_ROOT}`)).stdout, `${opened[0]}\n`);
      assert.equal((await call(alice, `${base}/${opened[1]}`, { method: "DELETE" })).status, 204);
      await sleep(IDLE_MS * 2);
      for (const id of opened) expectError(await call(alice, `${base}/${id}`), 404, "SESSION_NOT_FOUND");
      assert.equal((await a.vm.exec(`ls -A ${UPLOAD_ROOT}`)).stdout, "", "the expired upload's chunks are removed");
      assert.equal((await call(alice, base, json({ path: "/root/n3", size: 5 }))).status, 200, "expired uploads no longer count");
    } finally {
      await a.vm.delete();
      await b.vm.delete();
    }
  });

  it("a server stopped mid-upload removes the upload's chunks and the cut chunk's temp file from the VM", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const dataDir = await scratchDir();
    const key = createKey(dataDir, "erin");
    const served = await spawnServer(dataDir);
    let exited = false;
    try {
      const { vm, vmId } = await client(served.url, key).vms.create({ firewall: NOTHING });
      const api = async (p: string, init: RequestInit) => fetch(`${served.url}/v5/vms/${vmId}/fs/uploads${p}`, { ...init, headers: { authorization: `Bearer ${key}`, ...init.headers } });
      const open = (await (await api("", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ path: "/root/never.bin", size: 3 * MiB }) })).json()) as UploadStatus;
      assert.equal((await api(`/${open.uploadId}?offset=0`, { method: "PUT", headers: { "content-type": "application/octet-stream" }, body: randomBytes(MiB) })).status, 200);
      assert.equal((await vm.exec(`ls ${UPLOAD_ROOT}/${open.uploadId} | wc -l`)).stdout, "1\n", "one chunk stored in the VM");

      // The second chunk: half its bytes, then nothing (a client that stalls mid-body).
      const stalled = http.request(`${served.url}/v5/vms/${vmId}/fs/uploads/${open.uploadId}?offset=${MiB}`, {
        method: "PUT",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/octet-stream", "content-length": MiB },
      });
      stalled.on("error", () => undefined); // the server's shutdown cuts it
      stalled.write(randomBytes(MiB / 2));
      const upper = path.join(dataDir, "vms", vmId, "disk", "upper");
      const temps = async () => (await fs.readdir(path.join(upper, UPLOAD_ROOT, open.uploadId)).catch(() => [])).filter((n) => n.startsWith(".capsule-write-"));
      for (let i = 0; i < 100 && (await temps()).length === 0; i++) await sleep(50);
      assert.equal((await temps()).length, 1, "the chunk in flight is being written in the VM");

      const stopping = Date.now();
      served.child.kill("SIGTERM");
      await new Promise((resolve) => served.child.once("exit", resolve));
      exited = true;
      ctx.diagnostic(`server stopped in ${Date.now() - stopping} ms`);
      assert.deepEqual(await fs.readdir(path.join(upper, UPLOAD_ROOT)), [], "nothing of the upload is left on the VM's disk");
    } finally {
      if (!exited) {
        served.child.kill("SIGTERM");
        await new Promise((resolve) => served.child.once("exit", resolve));
      }
      await destroyDataDir(dataDir);
    }
  });
});

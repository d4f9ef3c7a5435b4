/**
 * The HTTP layer without sandboxes: auth, validation, unknown and unsupported routes, limits and
 * the OpenAPI document, on the real app over a real database and an engine stand-in that has no
 * VMs (every request here is answered before the engine would be reached).
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Engine } from "@capsule/engine";
import pino from "pino";
import { ActivityTracker } from "../src/activity.js";
import { createApp } from "../src/app.js";
import { DEFAULT_LIMITS } from "../src/context.js";
import { openDb, type Db } from "../src/db.js";
import { KeyStore } from "../src/keys.js";
import { Metrics } from "../src/metrics.js";
import { UploadSessions } from "../src/routes/v5/upload-sessions.js";
import { VmService } from "../src/vm-service.js";
import { scratchDir } from "../test-support/harness.js";

const noVms = { listVms: async () => [], listSnapshots: async () => [] } as unknown as Engine;

describe("app without sandboxes", () => {
  let dir: string;
  let db: Db;
  let app: ReturnType<typeof createApp>;
  let key: string;

  before(async () => {
    dir = await scratchDir();
    db = openDb(path.join(dir, "server.db"));
    const keys = new KeyStore(db);
    key = keys.createKey("alice").key;
    const log = pino({ level: "silent" });
    const svc = new VmService(noVms, db, new ActivityTracker(), log, { defaultIdleTimeoutSeconds: 300, egress: "none" });
    const limits = { ...DEFAULT_LIMITS, maxBodyBytes: 1024 };
    app = createApp({ svc, keys, log, metrics: new Metrics(() => svc.stateCounts(), () => svc.pool.stats()), limits, uploads: new UploadSessions(svc.gateway, limits, log) });
  });
  after(async () => {
    db.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  const req = async (method: string, p: string, opts: { key?: string | null; body?: string; headers?: Record<string, string> } = {}) => {
    const k = opts.key === undefined ? key : opts.key;
    const res = await app.request(p, {
      method,
      headers: { ...(k ? { authorization: `Bearer ${k}` } : {}), ...(opts.body !== undefined ? { "content-type": "application/json" } : {}), ...opts.headers },
      ...(opts.body !== undefined ? { body: opts.body } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: JSON.parse(text) as { code?: string; message?: string; error?: string } & Record<string, unknown> };
  };

  it("needs a valid key everywhere except /healthz and /openapi.json", async () => {
    for (const [m, p] of [["GET", "/v1/vms"], ["POST", "/v1/vms"], ["GET", "/v1/vms/abc"], ["GET", "/metrics"], ["GET", "/nope"]] as const) {
      const none = await req(m, p, { key: null });
      assert.equal(none.status, 401, `${m} ${p}`);
      assert.equal(none.body.code, "UNAUTHORIZED");
      assert.match(String(none.body.message), /missing API key/);
      const wrong = await req(m, p, { key: "cap_aaaaaaaaaaaa_" + "a".repeat(43) });
      assert.equal(wrong.status, 401);
      assert.match(String(wrong.body.message), /invalid or revoked/);
    }
    assert.equal((await req("GET", "/healthz", { key: null })).status, 200);
    assert.equal((await req("GET", "/openapi.json", { key: null })).status, 200);
  });

  it("answers unknown routes and unsupported features with known codes", async () => {
    const unknown = await req("GET", "/v2/whatever");
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.code, "NOT_FOUND");
    for (const [m, p] of [["GET", "/git/v1/repo"], ["POST", "/v1/domains/verifications"], ["GET", "/identity/v1/identities"]] as const) {
      const r = await req(m, p, { body: m === "POST" ? "{}" : undefined });
      assert.equal(r.status, 501, `${m} ${p}`);
      assert.equal(r.body.code, "BAD_REQUEST");
      assert.match(String(r.body.message), /not supported by Capsule/);
    }
    // Snapshot builds: a layer field Capsule does not build is a 501 naming it, before any VM exists.
    const ports = await req("POST", "/v1/vms/snapshots", { body: '{"template":{"aptDeps":["jq"],"ports":[{"port":443,"targetPort":3000}]}}' });
    assert.deepEqual([ports.status, ports.body.code], [501, "BAD_REQUEST"]);
    assert.match(String(ports.body.message), /template\.ports is not supported by Capsule/);
    const nested = await req("POST", "/v1/vms", { body: '{"spec":{"snapshot":{"baseImage":{"dockerfileContent":"FROM x"}}}}' });
    assert.deepEqual([nested.status, nested.body.code], [501, "BAD_REQUEST"]);
    assert.match(String(nested.body.message), /spec\.snapshot\.baseImage/);
    assert.equal((await req("POST", "/v1/vms/snapshots", { body: "{}" })).body.code, "VALIDATION_ERROR");
    assert.equal((await req("GET", "/v1/vms/builds/b1")).status, 404);
    // VM-scoped unsupported routes check ownership first
    const ws = await req("POST", "/v1/vms/someoneelses/watch-files");
    assert.equal(ws.body.code, "VM_NOT_FOUND");
  });

  it("rejects bad input with the route's code, before touching anything", async () => {
    const badJson = await req("POST", "/v1/vms", { body: "{not json" });
    assert.equal(badJson.status, 400);
    assert.equal(badJson.body.code, "CREATE_VM_BAD_REQUEST");
    const wrongType = await req("POST", "/v1/vms", { body: '{"idleTimeoutSeconds":"soon"}' });
    assert.equal(wrongType.status, 400);
    assert.equal(wrongType.body.code, "CREATE_VM_BAD_REQUEST");
    assert.match(String(wrongType.body.message), /idleTimeoutSeconds/);
    const badUser = await req("POST", "/v1/vms", { body: '{"users":[{"name":"Root; rm -rf /"}]}' });
    assert.equal(badUser.body.code, "CREATE_VM_BAD_REQUEST");
    // Repositories are a build layer, off until the operator allows URL prefixes: a 501 saying how.
    const unsupported = await req("POST", "/v1/vms", { body: '{"gitRepos":[{"repo":"https://git.example.com/x.git","path":"/x"}]}' });
    assert.deepEqual([unsupported.status, unsupported.body.code], [501, "BAD_REQUEST"]);
    assert.match(String(unsupported.body.message), /gitRepos.* is not supported by this server: .*--allow-repo/);
    const badDomain = await req("POST", "/v1/vms", { body: '{"domains":[{"domain":"x.example","vmPort":0}]}' });
    assert.equal(badDomain.body.code, "CREATE_VM_BAD_REQUEST");
    assert.match(String(badDomain.body.message), /vmPort/);
    const relPath = await req("GET", "/v1/vms/abc/files/etc%2Fpasswd");
    assert.equal(relPath.body.code, "FILES_BAD_REQUEST");
    const dots = await req("PUT", "/v1/vms/abc/files/%2Ftmp%2F..%2Fetc%2Fx", { body: '{"content":"aGk=","encoding":"base64"}' });
    assert.equal(dots.body.code, "FILES_BAD_REQUEST");
    const badB64 = await req("PUT", "/v1/vms/abc/files/%2Ftmp%2Fx", { body: '{"content":"%%%","encoding":"base64"}' });
    assert.equal(badB64.body.code, "FILES_BAD_REQUEST");
    const noCommand = await req("POST", "/v1/vms/abc/exec-await", { body: '{"command":5}' });
    assert.equal(noCommand.status, 400);
    assert.equal(noCommand.body.code, "VALIDATION_ERROR");
    const badHeader = await req("POST", "/v1/vms/abc/exec-await", { body: '{"command":"id"}', headers: { "x-freestyle-vm-linux-user-id": "../root" } });
    assert.equal(badHeader.body.code, "VALIDATION_ERROR");
    const big = await req("PUT", "/v1/vms/abc/files/%2Ftmp%2Fx", { body: JSON.stringify({ content: "A".repeat(2048), encoding: "base64" }) });
    assert.equal(big.status, 413);
    assert.equal(big.body.code, "FILES_BAD_REQUEST");
    // A declared Content-Length is judged from the header alone (as a real server's requests are).
    const declared = JSON.stringify({ content: "A".repeat(2048), encoding: "base64" });
    const bigDeclared = await req("PUT", "/v1/vms/abc/files/%2Ftmp%2Fx", { body: declared, headers: { "content-length": String(declared.length) } });
    assert.equal(bigDeclared.status, 413);
    assert.equal(bigDeclared.body.code, "FILES_BAD_REQUEST");
    const smallDeclared = await req("POST", "/v1/vms/abc/exec-await", { body: '{"command":5}', headers: { "content-length": "13" } });
    assert.equal(smallDeclared.body.code, "VALIDATION_ERROR");
  });

  it("answers 404 for VMs and snapshots the account does not own", async () => {
    for (const [m, p] of [
      ["GET", "/v1/vms/nosuchvm"],
      ["DELETE", "/v1/vms/nosuchvm"],
      ["POST", "/v1/vms/nosuchvm/stop"],
      ["POST", "/v1/vms/nosuchvm/exec-await"],
      ["GET", "/v1/vms/nosuchvm/files/%2Fetc"],
      ["POST", "/v1/vms/nosuchvm/snapshot"],
      ["GET", "/v1/vms/nosuchvm/pty/sessions"],
    ] as const) {
      const r = await req(m, p, m === "POST" ? { body: m === "POST" && p.endsWith("exec-await") ? '{"command":"id"}' : "{}" } : {});
      assert.equal(r.status, 404, `${m} ${p}`);
      assert.equal(r.body.code, "VM_NOT_FOUND");
    }
    const snap = await req("GET", "/v1/vms/snapshots/snap-nope");
    assert.equal(snap.body.code, "SNAPSHOT_NOT_FOUND");
    const snapDel = await req("DELETE", "/v1/vms/snapshots/snap-nope");
    assert.equal(snapDel.body.code, "SNAPSHOT_NOT_FOUND");
    const createFromOthers = await req("POST", "/v1/vms", { body: '{"snapshotId":"snap-nope"}' });
    assert.equal(createFromOthers.body.code, "SNAPSHOT_NOT_FOUND");
  });

  it("serves an OpenAPI document generated from the schemas, and metrics", async () => {
    const res = await app.request("/openapi.json");
    const doc = (await res.json()) as { openapi: string; paths: Record<string, Record<string, unknown>>; info: { description: string } };
    assert.equal(doc.openapi, "3.1.0");
    for (const p of ["/v1/vms", "/v1/vms/{vm_id}/exec-await", "/v1/vms/{vm_id}/files/{filepath}", "/v1/vms/{vm_id}/pty", "/v1/vms/{vm_id}/exec-stream", "/v1/vms/snapshots/{snapshot_id}"]) {
      assert.ok(doc.paths[p], `documents ${p}`);
    }
    assert.match(doc.info.description, /Streaming exec/);
    const metrics = await app.request("/metrics", { headers: { authorization: `Bearer ${key}` } });
    const text = await metrics.text();
    assert.match(text, /capsule_vms\{state="running"\} 0/);
    assert.match(text, /capsule_http_request_duration_seconds_bucket/);
  });
});

/**
 * How often the /v5 read routes ask the engine: a listing answers from one `listVms` (each VM's
 * paused state and firewall come from its record in it), one VM from one `getVm`. The real app
 * and database over an engine stand-in that counts its calls.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Engine, VmInfo as EngineVm } from "@capsule/engine";
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

const CREATED = "2026-12-01T00:00:00.000Z";
const record = (id: string, state: EngineVm["state"], firewall?: EngineVm["firewall"]): EngineVm => ({
  id,
  state,
  runtime: "runsc",
  image: "trixie",
  limits: { cpus: 1, memoryMb: 512, diskMb: 1024 } as EngineVm["limits"],
  egress: "none",
  ...(firewall ? { firewall } : {}),
  createdAt: CREATED,
});
const VMS = [record("aaaaaaaaaaaa", "running", { rules: [{ to: "host", protocol: "tcp", port: 8080 }] }), record("bbbbbbbbbbbb", "paused", { rules: [] })];

describe("/v5 reads: engine calls per request", () => {
  const calls = { listVms: 0, getVm: 0 };
  const engine = {
    listVms: async () => (calls.listVms++, VMS),
    getVm: async (id: string) => {
      calls.getVm++;
      const vm = VMS.find((v) => v.id === id);
      if (!vm) throw new Error(`no VM ${id}`);
      return vm;
    },
    listSnapshots: async () => [],
  } as unknown as Engine;
  let dir: string;
  let db: Db;
  let app: ReturnType<typeof createApp>;
  let key: string;

  before(async () => {
    dir = await scratchDir();
    db = openDb(path.join(dir, "server.db"));
    const keys = new KeyStore(db);
    const made = keys.createKey("alice");
    key = made.key;
    const log = pino({ level: "silent" });
    const svc = new VmService(engine, db, new ActivityTracker(), log, { defaultIdleTimeoutSeconds: null, egress: "none" });
    for (const vm of VMS) svc.rows.insertVm({ id: vm.id, account_id: made.info.accountId, name: null, idle_timeout_seconds: null, activity_threshold_bytes: 0, created_at: CREATED });
    app = createApp({ svc, keys, log, metrics: new Metrics(() => svc.stateCounts(), () => svc.pool.stats()), limits: DEFAULT_LIMITS, uploads: new UploadSessions(svc.gateway, DEFAULT_LIMITS, log) });
  });
  after(async () => {
    db.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  /** The answer to GET `p`, and the engine calls it made. */
  const get = async (p: string) => {
    calls.listVms = calls.getVm = 0;
    const res = await app.request(p, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(res.status, 200, await res.clone().text());
    return { body: (await res.json()) as Record<string, unknown>, calls: { ...calls } };
  };

  it("GET /v5/vms: one listing, paused state from it", async () => {
    const { body, calls: made } = await get("/v5/vms");
    assert.deepEqual(made, { listVms: 1, getVm: 0 });
    assert.deepEqual((body.vms as Array<{ id: string; state: string }>).map((v) => [v.id, v.state]), [["aaaaaaaaaaaa", "running"], ["bbbbbbbbbbbb", "paused"]]);
    assert.deepEqual([body.runningCount, body.pausedCount], [1, 1]);
  });

  it("GET /v5/vms/{id}: one record read", async () => {
    const { body, calls: made } = await get("/v5/vms/bbbbbbbbbbbb");
    assert.deepEqual(made, { listVms: 0, getVm: 1 });
    assert.equal(body.state, "paused");
  });

  it("GET /v5/firewall/rules: one listing for all VMs, one record read for one", async () => {
    const all = await get("/v5/firewall/rules");
    assert.deepEqual(all.calls, { listVms: 1, getVm: 0 });
    assert.deepEqual((all.body.rules as Array<{ id: string; destination: unknown }>).map((r) => [r.id, r.destination]), [["aaaaaaaaaaaa-fw-0", { vmId: "host", protocol: "tcp", port: 8080 }]]);
    const one = await get("/v5/firewall/rules?vmId=aaaaaaaaaaaa");
    assert.deepEqual(one.calls, { listVms: 0, getVm: 1 });
    assert.deepEqual(one.body.rules, all.body.rules);
  });
});

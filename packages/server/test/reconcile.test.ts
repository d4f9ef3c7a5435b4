/**
 * Reconcile after a restart deletes only what an owner record says is garbage: a VM or snapshot
 * the engine made for a create that never got its row. Anything else no row explains is
 * quarantined (kept, stopped, served to nobody), and an empty database while the engine holds
 * VMs refuses to start instead of destroying tenants' disks.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import { describe, it } from "node:test";
import { dbPath, startServer, type RunningServer } from "../src/index.js";
import { ownerLabel, START_WITH_UNOWNED_ENV } from "../src/vms/provisioning.js";
import { call, destroyDataDir, sandboxGap, scratchDir, testServerOptions } from "../test-support/harness.js";

function start(dataDir: string, extra: { startWithUnowned?: boolean } = {}): Promise<RunningServer> {
  return startServer(testServerOptions(dataDir, extra));
}

describe("reconcile on restart", () => {
  it("deletes unrecorded creates, quarantines what it cannot explain, refuses an empty database", async (ctx) => {
    const gap = await sandboxGap();
    if (gap) return ctx.skip(gap);
    const dataDir = await scratchDir();
    let server: RunningServer | undefined;
    try {
      server = await start(dataDir);
      const key = server.keys.createKey("alice").key;
      const account = server.keys.ensureAccount("alice");
      const tenantVm = (await call(server.url, key, "POST", "/v1/vms", {})).body.id as string;
      await call(server.url, key, "POST", `/v1/vms/${tenantVm}/exec-await`, { command: "echo kept > /root/data" });

      // A crash between the engine's create and the row insert: the intent is on record.
      const garbageVm = (await server.engine.createVm({ owner: ownerLabel(account.id, server.svc.rows.beginIntent(account.id, "vm")) })).id;
      const garbageSnap = (await server.engine.snapshotVm(tenantVm, { owner: ownerLabel(account.id, server.svc.rows.beginIntent(account.id, "snapshot")) })).id;
      // A VM and a snapshot no record explains (another creator's, or an older server's).
      const strangerVm = (await server.engine.createVm()).id;
      const strangerSnap = (await server.engine.snapshotVm(tenantVm)).id;
      await server.close();

      server = await start(dataDir);
      const vms = new Map((await server.engine.listVms()).map((v) => [v.id, v]));
      const snaps = new Set((await server.engine.listSnapshots()).map((s) => s.id));
      assert.equal(vms.has(garbageVm), false, "the unrecorded VM was deleted");
      assert.equal(snaps.has(garbageSnap), false, "the unrecorded snapshot was deleted");
      assert.equal(vms.get(strangerVm)?.state, "stopped", "the unexplained VM is kept, stopped");
      assert.ok(snaps.has(strangerSnap), "the unexplained snapshot is kept");
      assert.equal(server.svc.rows.intentTokens().size, 0, "every intent is settled");
      assert.equal((await call(server.url, key, "GET", `/v1/vms/${strangerVm}`)).status, 404, "a quarantined VM is served to no account");
      const data = await call(server.url, key, "POST", `/v1/vms/${tenantVm}/exec-await`, { command: "cat /root/data" });
      assert.equal(data.body.stdout, "kept\n", "the tenant's VM is untouched");
      await server.close();
      server = undefined;

      // server.db lost: refuse to start, saying how to proceed; nothing is deleted.
      const db = dbPath(dataDir);
      for (const f of [db, `${db}-wal`, `${db}-shm`]) await fs.rename(f, `${f}.aside`).catch(() => undefined);
      await assert.rejects(start(dataDir), (err: Error) => {
        assert.match(err.message, /database is empty/);
        assert.ok(err.message.includes(START_WITH_UNOWNED_ENV), err.message);
        return true;
      });
      server = await start(dataDir, { startWithUnowned: true });
      const kept = new Set((await server.engine.listVms()).map((v) => v.id));
      assert.ok(kept.has(tenantVm) && kept.has(strangerVm), "with the switch, every VM is kept (quarantined)");
      await server.close();
      server = undefined;
      // The database comes back: the tenant's VM is served again, its disk intact.
      for (const f of [db, `${db}-wal`, `${db}-shm`]) await fs.rename(`${f}.aside`, f).catch(() => undefined);
      server = await start(dataDir);
      const again = await call(server.url, key, "POST", `/v1/vms/${tenantVm}/exec-await`, { command: "cat /root/data" });
      assert.equal(again.body.stdout, "kept\n");
    } finally {
      await server?.close();
      await destroyDataDir(dataDir);
    }
  });
});

/**
 * The calls ComputeSDK's Freestyle provider makes, through the client it uses
 * (freestyle-sandboxes@0.1.34), on real sandboxes with the server's egress `none`: snapshots.ensure
 * of {aptDeps: [python3], systemd, additionalFiles}, a create with the same template inline (booting
 * from the cached snapshot, no second build), exec-await, files write and read, list, get and
 * delete; and a template whose oneshot needs the internet fails with VM_SETUP_FAILED naming the
 * service and showing its log, in bounded time. One server for the file; the python3 snapshot is
 * built once and shared.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Freestyle, type VmTemplate } from "freestyle-sandboxes";
import { useServer } from "@capsule/server/test-support";

const PORT = 8000;
/** What ComputeSDK's provider sends as its template: python3, a file and a service serving it. */
const TEMPLATE = {
  aptDeps: ["python3"],
  systemd: { services: [{ name: "web", mode: "service" as const, exec: [`python3 -m http.server ${PORT} --directory /app`], enable: true }] },
  additionalFiles: { "/app/hello.txt": { content: "hello from the template\n" } },
};
/** A failing build must answer well within this; the oneshot's own curl gives up after 5 s. */
const FAILED_BUILD_MS = 120_000;

async function eventually(check: () => Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe("ComputeSDK's Freestyle provider (freestyle-sandboxes@0.1.34)", () => {
  const t = useServer();

  it("ensure {template: {aptDeps: [python3], systemd, additionalFiles}}, create with it inline, exec, files, list, get, delete", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { server, url, keyA } = t.get();
    const fs = new Freestyle({ baseUrl: url, apiKey: keyA });
    const alice = server.keys.ensureAccount("alice").id;

    const ensured = await fs.vms.snapshots.ensure({ template: TEMPLATE });
    assert.match(ensured.snapshotId, /\S/);
    const builds = server.svc.builds.buildRows.count(alice);
    // The provider passes the plain object, which the client sends as is; 0.1.34's create type
    // asks for a VmTemplate there (its ensure takes either).
    const { vmId, vm } = await fs.vms.create({ template: TEMPLATE as unknown as VmTemplate, idleTimeoutSeconds: null });
    try {
      assert.equal(server.svc.builds.buildRows.count(alice), builds, "the create booted from the cached snapshot, no second build");
      assert.equal((await server.engine.getVm(vmId)).snapshotId, ensured.snapshotId);

      const exec = await vm.exec({ command: "python3 -c 'print(6*7)'", timeoutMs: 30_000 });
      assert.deepEqual([exec.stdout, exec.statusCode], ["42\n", 0]);
      assert.equal((await vm.exec("pwd")).stdout, "/root\n", "no workdir: exec starts in HOME");
      await eventually(async () => (await vm.exec(`curl -s -m 2 http://127.0.0.1:${PORT}/hello.txt`)).stdout === "hello from the template\n", "the template's service");

      await vm.fs.writeTextFile("/tmp/provider.py", "print('written by the provider')\n");
      assert.equal(await vm.fs.readTextFile("/tmp/provider.py"), "print('written by the provider')\n");
      assert.equal((await vm.exec("python3 /tmp/provider.py")).stdout, "written by the provider\n");
      assert.equal(await vm.fs.readTextFile("/app/hello.txt"), "hello from the template\n", "the template's file");

      const listed = await fs.vms.list();
      assert.ok(listed.vms.some((v) => v.id === vmId), "list has the VM");
      const got = await fs.vms.get({ vmId });
      assert.equal(got.vm.vmId, vmId);
      assert.equal((await got.vm.exec("echo got")).stdout, "got\n");
    } finally {
      await fs.vms.delete({ vmId });
    }
    assert.ok(!(await fs.vms.list()).vms.some((v) => v.id === vmId), "delete removed it");
    assert.equal((await server.engine.listVms()).length, 0, "no VM (builder or created) is left");
  });

  it("a template whose oneshot needs the internet fails the build naming the service with its log, not a hang", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { server, url, keyA } = t.get();
    const fs = new Freestyle({ baseUrl: url, apiKey: keyA });
    const snapshotsBefore = (await server.engine.listSnapshots()).length;
    const template = {
      systemd: { services: [{ name: "fetch-deps", mode: "oneshot" as const, exec: ["curl -sS -m 5 https://example.com/"] }] },
    };
    const started = Date.now();
    const err = await fs.vms.snapshots.ensure({ template }).then(
      () => assert.fail("the build succeeded"),
      (e: Error & { body?: { code?: string } }) => e,
    );
    assert.ok(Date.now() - started < FAILED_BUILD_MS, `answered in ${Date.now() - started} ms`);
    assert.equal(err.name, "VmSetupFailedError", err.message);
    assert.equal(err.body?.code, "VM_SETUP_FAILED");
    // 0.1.34 shows only the message: it must carry the service and its log.
    assert.match(err.message, /fetch-deps\.service/);
    assert.match(err.message, /curl/i, "the message shows the service's log");
    assert.equal((await server.engine.listVms()).length, 0, "the builder VM is gone");
    assert.equal((await server.engine.listSnapshots()).length, snapshotsBefore, "no snapshot was made");
  });
});

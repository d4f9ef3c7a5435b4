/** `vm.systemd.*` through the official freestyle@0.1.63 client, and `systemd` on create, on real sandboxes. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { SystemdControlResult, SystemdCreateResult, SystemdLogs, SystemdServiceList, SystemdServiceSpec, SystemdServiceStatus } from "@capsule/contract/schemas";
import { asUser, client, rejectsWith, type Vm as ClientVm } from "../test-support/client.js";
import { useServer } from "../test-support/harness.js";

/** The client's `vm.systemd` (its shipped .d.mts leaves it out), typed with the contract's shapes. */
interface SystemdHandle {
  list(): Promise<SystemdServiceList>;
  create(spec: Partial<SystemdServiceSpec> & { name: string }): Promise<SystemdCreateResult>;
  delete(o: { serviceId: string }): Promise<{ success: boolean; message: string }>;
  getStatus(o: { serviceId: string }): Promise<SystemdServiceStatus>;
  getLogs(o: { serviceId: string; lines?: number; since?: string }): Promise<SystemdLogs>;
  start(o: { services: Array<{ id: string }> }): Promise<SystemdControlResult>;
  stop(o: { services: Array<{ id: string }> }): Promise<SystemdControlResult>;
  service(id: string): { start(): Promise<SystemdControlResult> };
}
type Vm = ClientVm & { systemd: SystemdHandle };

const PORT = 8000;
/** A tiny HTTP server from the base image's perl (the image has no python or busybox httpd). */
const WEB = `perl -MIO::Socket::INET -e '$|=1; my $s = IO::Socket::INET->new(LocalPort => ${PORT}, Listen => 5, ReuseAddr => 1) or die "listen: $!"; print "listening\\n"; while (my $c = $s->accept) { <$c>; print $c "HTTP/1.0 200 OK\\r\\n\\r\\nhello from the service\\n"; close $c }'`;
const CURL = `curl -s -m 2 http://127.0.0.1:${PORT}/`;

async function answers(vm: Vm): Promise<boolean> {
  return (await vm.exec(CURL)).stdout === "hello from the service\n";
}

/** POST /v1/vms over raw HTTP: the client refuses a top-level `systemd`. Answers the status and body. */
async function rawCreate(url: string, key: string, body: Record<string, unknown>): Promise<{ status: number; body: { id?: string; code?: string; message?: string } }> {
  const res = await fetch(`${url}/v1/vms`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as { id?: string; code?: string; message?: string } };
}

/** Polls until `check` holds (services start asynchronously after a boot). */
async function eventually(check: () => Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe("systemd services", () => {
  const t = useServer();

  it("an enabled web service: active, logs, stop stops it, back after stop/start and in a VM from a snapshot; users, errors", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const fs = client(t.get().url, t.get().keyA);
    const created0 = await fs.vms.create({ idleTimeoutSeconds: null });
    const vm = created0.vm as Vm;
    const vmId = created0.vmId;
    let fromSnapshot: Vm | undefined;
    let patched: Vm | undefined;
    try {
      assert.equal((await vm.exec("useradd -m svcuser")).statusCode, 0);
      const created = await vm.systemd.create({ name: "web", mode: "service", exec: [WEB], enable: true, restartPolicy: { policy: "on-failure" } });
      assert.deepEqual([created.success, created.serviceName], [true, "web"]);
      const status = await vm.systemd.getStatus({ serviceId: "web.service" });
      assert.deepEqual([status.activeState, status.subState, status.loadState], ["active", "running", "loaded"]);
      assert.ok((await vm.systemd.list()).services.some((s) => s.name === "web"));
      await eventually(() => answers(vm), "the web service to answer");
      const { logs } = await vm.systemd.getLogs({ serviceId: "web", lines: 10 });
      const line = logs.find((l) => l.message === "listening");
      assert.ok(line && Date.parse(line.timestamp) > Date.now() - 60_000, JSON.stringify(logs));

      const stopped = await vm.systemd.stop({ services: [{ id: "web" }] });
      assert.deepEqual(stopped.results.map((r) => r.success), [true]);
      assert.equal((await vm.systemd.getStatus({ serviceId: "web" })).activeState, "inactive");
      assert.equal(await answers(vm), false, "the port stopped answering");
      const started = await vm.systemd.service("web").start();
      assert.deepEqual(started.results.map((r) => r.success), [true]);
      await eventually(() => answers(vm), "the restarted service");

      await vm.stop();
      await vm.start();
      await eventually(() => answers(vm), "the service after the VM's stop and start");

      await vm.systemd.create({ name: "side", mode: "service", exec: ["exec sleep 1000"] });
      const { snapshotId } = await vm.snapshot();
      const copy = (await fs.vms.create({ snapshotId, idleTimeoutSeconds: null })).vm as Vm;
      fromSnapshot = copy;
      await eventually(() => answers(copy), "the service in a VM booted from the snapshot");
      assert.equal((await copy.systemd.getStatus({ serviceId: "web" })).subState, "running");

      // patchedServices (the client's type: a service's name and any of its fields): the fields a
      // patch gives replace those of the snapshot's definition, the rest (exec, enable,
      // restartPolicy) is kept, and what runs once create answers is the patched definition; a
      // patch can disable a service (it is stopped) or change one the same create defines.
      const patchedRes = await rawCreate(t.get().url, t.get().keyA, {
        snapshotId,
        idleTimeoutSeconds: null,
        systemd: {
          services: [{ name: "extra", mode: "service", exec: ["echo extra $MODE; exec sleep 1000"], env: { MODE: "as defined" } }],
          patchedServices: [
            { name: "web", user: "svcuser", env: { PATCHED: "1" } },
            { name: "side.service", enable: false },
            { name: "extra", env: { MODE: "patched" } },
          ],
        },
      });
      assert.equal(patchedRes.status, 200, JSON.stringify(patchedRes.body));
      const patchedVm = fs.vms.ref({ vmId: String(patchedRes.body.id) }) as Vm;
      patched = patchedVm;
      const web = await patchedVm.systemd.getStatus({ serviceId: "web" });
      assert.deepEqual([web.activeState, web.subState, web.user, web.enabled], ["active", "running", "svcuser", true]);
      assert.equal((await patchedVm.exec(`stat -c %U /proc/${web.pid}; tr '\\0' '\\n' < /proc/${web.pid}/environ | grep ^PATCHED=`)).stdout, "svcuser\nPATCHED=1\n");
      await eventually(() => answers(patchedVm), "the patched service (its exec kept)");
      const side = await patchedVm.systemd.getStatus({ serviceId: "side" });
      assert.deepEqual([side.activeState, side.enabled], ["inactive", false], "a patch that disables a service stops it");
      assert.ok((await patchedVm.systemd.getLogs({ serviceId: "extra" })).logs.some((l) => l.message === "extra patched"));
      const vmsBefore = (await fs.vms.list()).vms.length;
      const missing = await rawCreate(t.get().url, t.get().keyA, { snapshotId, systemd: { patchedServices: [{ name: "nope", env: { A: "b" } }] } });
      assert.deepEqual([missing.status, missing.body.code], [404, "SERVICE_NOT_FOUND"], "a patch of a service nobody defines");
      assert.equal((await fs.vms.list()).vms.length, vmsBefore, "a failed create leaves no VM");

      // A service as a non-root user, created through the client's user-scoped handle.
      const user = asUser(vm, "svcuser") as unknown as Vm;
      await user.systemd.create({ name: "mine", mode: "service", exec: ["id -un; id -u > /tmp/svc-uid; exec sleep 1000"] });
      await eventually(async () => (await vm.exec("cat /tmp/svc-uid")).stdout === (await vm.exec("id -u svcuser")).stdout, "the user's service");
      assert.equal((await vm.exec("stat -c %U /tmp/svc-uid")).stdout, "svcuser\n");
      assert.ok((await vm.systemd.getLogs({ serviceId: "mine" })).logs.some((l) => l.message === "svcuser"));
      assert.deepEqual((await user.systemd.list()).services.map((s) => s.name), ["mine"], "a user sees only its own services");
      await rejectsWith(user.systemd.getStatus({ serviceId: "web" }), "ServiceNotFoundError", "SERVICE_NOT_FOUND");

      await rejectsWith(vm.systemd.getStatus({ serviceId: "nope" }), "ServiceNotFoundError", "SERVICE_NOT_FOUND");
      await rejectsWith(vm.systemd.create({ name: "web", mode: "service", exec: ["true"] }), "ServiceAlreadyExistsError", "SERVICE_ALREADY_EXISTS");
      await rejectsWith(vm.systemd.create({ name: "x", mode: "service", exec: ["true"], readySignal: true }), "BadRequestError", "BAD_REQUEST");
      await rejectsWith(vm.systemd.create({ name: "../x", mode: "service", exec: ["true"] }), "ValidationErrorError", "VALIDATION_ERROR");
      await rejectsWith((client(t.get().url, t.get().keyB).vms.ref({ vmId }) as Vm).systemd.list(), "VmNotFoundError", "VM_NOT_FOUND");

      assert.deepEqual(await vm.systemd.delete({ serviceId: "web" }), { success: true, message: "service web stopped and deleted" });
      await rejectsWith(vm.systemd.getStatus({ serviceId: "web" }), "ServiceNotFoundError", "SERVICE_NOT_FOUND");
      assert.equal(await answers(vm), false);
    } finally {
      await patched?.delete();
      await fromSnapshot?.delete();
      await vm.delete();
    }
  });

  it("a crash loop is throttled and reported failed; a log flood stays bounded; systemd on create over raw HTTP", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    // The client refuses a top-level `systemd`, so the create goes over raw HTTP.
    const res = await fetch(`${url}/v1/vms`, {
      method: "POST",
      headers: { authorization: `Bearer ${keyA}`, "content-type": "application/json" },
      body: JSON.stringify({
        idleTimeoutSeconds: null,
        additionalFiles: { "/opt/setup.sh": { content: "echo prepared > /root/prepared\n", executable: true } },
        systemd: {
          services: [
            { name: "web", mode: "service", exec: [WEB], after: ["setup"], requires: ["setup"] },
            { name: "setup", mode: "oneshot", exec: ["/opt/setup.sh"] },
            { name: "crash", mode: "service", exec: ["echo crashing; exit 1"], restartPolicy: { policy: "always", restartSec: 0, startLimitBurst: 3, startLimitIntervalSec: 30 } },
            { name: "later", mode: "service", exec: ["sleep 1000"], enable: false },
          ],
        },
      }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    const { id } = (await res.json()) as { id: string };
    const vm = client(url, keyA).vms.ref({ vmId: id }) as Vm;
    try {
      assert.equal((await vm.exec("cat /root/prepared")).stdout, "prepared\n", "the oneshot ran before create answered");
      assert.equal((await vm.systemd.getStatus({ serviceId: "setup" })).subState, "exited");
      assert.equal((await vm.systemd.getStatus({ serviceId: "web" })).activeState, "active");
      assert.equal((await vm.systemd.getStatus({ serviceId: "later" })).activeState, "inactive", "a disabled service is not started");
      await eventually(async () => (await vm.systemd.getStatus({ serviceId: "crash" })).activeState === "failed", "the crash loop's start limit");
      const crash = (await vm.systemd.list()).services.find((s) => s.name === "crash");
      assert.deepEqual([crash?.result, crash?.restarts], ["start-limit-hit", 2]);
      assert.equal((await vm.systemd.getLogs({ serviceId: "crash" })).logs.filter((l) => l.message === "crashing").length, 3, "3 runs: the start limit's burst");

      await vm.systemd.create({ name: "flood", mode: "oneshot", exec: ["head -c 3000 /dev/zero | tr '\\0' x; yes flooding the log | head -c 6000000"] });
      const bytes = Number((await vm.exec("cat /var/log/capsule/services/flood.log* | wc -c")).stdout);
      assert.ok(bytes > 1024 * 1024 && bytes <= 2 * 1024 * 1024 + 256 * 1024, `the flood's log holds ${bytes} bytes`);
      const { logs } = await vm.systemd.getLogs({ serviceId: "flood", lines: 1000 });
      assert.equal(logs.length, 1000);
      assert.ok(logs.every((l) => l.message.length <= 4096));
      const since = new Date(Date.parse(logs.at(-1)!.timestamp) + 1).toISOString();
      assert.ok((await vm.systemd.getLogs({ serviceId: "flood", since })).logs.length <= 1);
    } finally {
      await vm.delete();
    }
  });
});

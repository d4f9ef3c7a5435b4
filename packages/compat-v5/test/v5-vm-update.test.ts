/**
 * Changing a v5 VM through the official `freestyle@0.2.17` client, on real sandboxes:
 * `vm.update` (name, idle timeout; what Capsule lacks refused by name) and `vm.resize` (vCPUs and
 * memory grow, recorded at once, applied at the next boot; shrinks, empty requests, disk growth
 * and sizes over the server's maximum refused); the idle timeout of a create (absent or -1: never,
 * whatever the server's default); and the client's own `freestyle` CLI pointed at Capsule with
 * `--proxy`, listing and creating VMs.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { useServer } from "@capsule/server/test-support";
import { client, NOTHING, rejectsApi } from "../test-support/v5.js";

/** The CLI the package installs as `freestyle` (its package.json `bin`). */
const FREESTYLE_CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../node_modules/freestyle/dist/cli/index.js");

describe("official client 0.2.17: update and resize", () => {
  const t = useServer();

  it("vm.update changes the name and idle timeout; what Capsule lacks is refused by name", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, keyB } = t.get();
    const fsA = client(url, keyA);
    const { vm, vmId } = await fsA.vms.create({ firewall: NOTHING, displayName: "first" });
    try {
      const renamed = await vm.update({ displayName: "second", idleTimeoutSeconds: 600 });
      assert.deepEqual([renamed.displayName, renamed.idleTimeoutSeconds], ["second", 600]);
      assert.deepEqual([(await vm.data()).displayName, (await vm.data()).idleTimeoutSeconds], ["second", 600]);
      const cleared = await vm.update({ displayName: "", idleTimeoutSeconds: -1, slug: "", metadata: { gone: "" }, ttlSeconds: -1, automaticRestart: false });
      assert.deepEqual([cleared.displayName, cleared.idleTimeoutSeconds], [null, null], "clearing values clear, or change nothing");
      assert.equal((await vm.update({})).id, vmId);
      const slug = await rejectsApi(vm.update({ slug: "my-vm", displayName: "not applied" }), 501, "BAD_REQUEST");
      assert.match(slug.message, /slugs/);
      await rejectsApi(vm.update({ metadata: { env: "prod" } }), 501, "BAD_REQUEST");
      await rejectsApi(vm.update({ autoDeleteSeconds: 60 }), 501, "BAD_REQUEST");
      assert.equal((await vm.data()).displayName, null, "a refused update changes nothing");
      await rejectsApi(vm.update({ idleTimeoutSeconds: 0 }), 400, "VALIDATION_ERROR");
      await rejectsApi(client(url, keyB).vms.ref(vmId).update({ displayName: "bob's" }), 404, "VM_NOT_FOUND");
      assert.equal((await vm.exec("echo still here")).stdout, "still here\n");
    } finally {
      await vm.delete();
    }
  });

  it("vm.resize grows vCPUs and memory from the next boot; shrinks, disk growth and over-maximum sizes are refused", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, keyB, server } = t.get();
    const fsA = client(url, keyA);
    const { vm, vmId, data } = await fsA.vms.create({ firewall: NOTHING });
    try {
      const { cpu, memory, storage } = data.resources;
      const grown = await vm.resize({ memory: memory + 256 });
      assert.deepEqual(grown.resources, { cpu, memory: memory + 256, storage });
      assert.equal((await server.engine.getVm(vmId)).limits.memoryMb, memory + 256, "recorded by the engine");
      assert.equal((await vm.resize({ cpu, storage })).resources.memory, memory + 256, "the same sizes: nothing changes");

      const shrink = await rejectsApi(vm.resize({ memory: memory }), 400, "VALIDATION_ERROR");
      assert.match(shrink.message, /only grows/);
      await rejectsApi(vm.resize({ storage: storage - 1 }), 400, "VALIDATION_ERROR");
      await rejectsApi(vm.resize({}), 400, "VALIDATION_ERROR");
      const disk = await rejectsApi(vm.resize({ storage: storage + 1024 }), 501, "BAD_REQUEST");
      assert.match(disk.message, /disk/);
      await rejectsApi(vm.resize({ memory: 64 * 1024 * 1024 }), 403, "MEM_OVER_PLAN_LIMIT");
      await rejectsApi(vm.resize({ cpu: 4096 }), 403, "VCPU_OVER_PLAN_LIMIT");
      await rejectsApi(client(url, keyB).vms.ref(vmId).resize({ memory: memory + 512 }), 404, "VM_NOT_FOUND");
      assert.equal((await server.engine.getVm(vmId)).limits.memoryMb, memory + 256, "no refused resize changed anything");

      // The next boot has the new limit: stopped (the v1 route; v5 has no stop) and started again.
      const stop = await fsA.fetch(`/v1/vms/${vmId}/stop`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
      assert.equal(stop.status, 200, await stop.text());
      assert.equal((await vm.start()).state, "running");
      assert.equal((await vm.exec("echo booted")).stdout, "booted\n");
      // gVisor's MemTotal is the sandbox's memory limit: the one the VM booted with.
      const memTotal = /^MemTotal:\s+(\d+) kB$/m.exec((await vm.exec("cat /proc/meminfo")).stdout ?? "")?.[1];
      assert.equal(Number(memTotal), (memory + 256) * 1024);
    } finally {
      await vm.delete();
    }
  });
});

describe("official client 0.2.17: the idle timeout as 0.2 means it", () => {
  // A server whose own default would stop a VM after 1 s idle: 0.2's absent and -1 must not.
  const t = useServer({ defaultIdleTimeoutSeconds: 1, idleCheckMs: 200 });

  it("absent or -1 is never (the server's default does not apply); a given timeout stops the VM", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const fsA = client(url, keyA);
    const absent = await fsA.vms.create({ firewall: NOTHING });
    const never = await fsA.vms.create({ firewall: NOTHING, idleTimeoutSeconds: -1 });
    const short = await fsA.vms.create({ firewall: NOTHING, idleTimeoutSeconds: 1 });
    try {
      assert.deepEqual([absent.data.idleTimeoutSeconds, never.data.idleTimeoutSeconds, short.data.idleTimeoutSeconds], [null, null, 1]);
      // Listing does not count as activity: it reaches no guest.
      const states = async () => new Map((await fsA.vms.list()).vms.map((v) => [v.id, v.state]));
      const deadline = Date.now() + 15_000;
      while ((await states()).get(short.vmId) !== "stopped") {
        assert.ok(Date.now() < deadline, "the VM with a 1 s idle timeout was never stopped");
        await sleep(200);
      }
      await sleep(1_500); // well past the 1 s default, a few idle checks later
      const now = await states();
      assert.deepEqual([now.get(absent.vmId), now.get(never.vmId)], ["running", "running"], "absent and -1: never idle-stopped");
    } finally {
      for (const id of [absent.vmId, never.vmId, short.vmId]) await fsA.vms.delete(id);
    }
  });
});

describe("the freestyle CLI of 0.2.17 (--proxy) against Capsule", () => {
  const t = useServer();

  it("creates and lists VMs", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    // A scratch HOME and cwd: the CLI reads ~/.config and a .env in its cwd, and must find neither.
    const home = await fs.mkdtemp(path.join(os.tmpdir(), "freestyle-cli-"));
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("FREESTYLE_")));
    const cli = async (...args: string[]) => {
      const { stdout } = await promisify(execFile)(process.execPath, [FREESTYLE_CLI, "--proxy", url, "--api-key", keyA, "--output", "json", ...args], { cwd: home, env: { ...env, HOME: home, XDG_CONFIG_HOME: home }, timeout: 60_000 });
      return JSON.parse(stdout) as Record<string, unknown>;
    };
    let id: string | undefined;
    try {
      const created = await cli("vm", "create", "--no-internet", "--no-ssh", "--display-name", "from-cli");
      id = String(created.id);
      assert.deepEqual([created.state, created.displayName], ["running", "from-cli"]);
      const listed = (await cli("vm", "list")) as { vms: Array<{ id: string }>; totalCount: number };
      assert.deepEqual(listed.vms.map((v) => v.id), [id]);
      assert.equal(listed.totalCount, 1);
      assert.equal((await cli("vm", "get", id)).displayName, "from-cli");
      assert.equal((await client(url, keyA).vms.ref(id).exec("echo via sdk")).stdout, "via sdk\n");
    } finally {
      if (id) await client(url, keyA).vms.delete(id);
      await fs.rm(home, { recursive: true, force: true });
    }
  });
});

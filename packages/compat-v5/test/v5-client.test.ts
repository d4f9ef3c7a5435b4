/**
 * The `/v5` API driven by the official `freestyle@0.2.17` client (`new Freestyle({ baseUrl })`),
 * on real sandboxes: create with a firewall, exec (root, the default uid-1000 user, linuxUser,
 * env, stdin, timeout), files (1 KB and 5 MB round trips with equal sha256, Range, mode, dir,
 * mkdir, exists, stat, remove), a disk snapshot and a VM booted from it, delete; and bad input
 * answered `{code, message}` with codes the client passes on, identity tokens and background
 * requests among them (coded 501s, each sent once).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { Freestyle } from "freestyle";
import { useServer } from "@capsule/server/test-support";
import { client, INTERNET, NOTHING, rejectsApi, sha256 } from "../test-support/v5.js";

describe("official client 0.2.17 on /v5", () => {
  const t = useServer({ egress: "internet" });

  it("create with a firewall, exec, files, snapshot and boot from it, delete", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, server } = t.get();
    const fs = client(url, keyA);

    const { vm, vmId, data, firewallRules, tlsRules } = await fs.vms.create({ firewall: INTERNET, displayName: "builder" });
    let copyId: string | undefined;
    try {
      assert.equal(data.state, "running");
      assert.equal(data.displayName, "builder");
      assert.ok(data.resources.memory > 0 && data.resources.cpu > 0);
      assert.deepEqual(tlsRules, []);
      assert.equal(firewallRules.length, 1);
      assert.deepEqual(firewallRules[0]?.destination, { public: true });
      assert.deepEqual((await server.engine.getVm(vmId)).firewall, { rules: [{ to: "public" }] });
      assert.equal((await fs.vms.get(vmId)).id, vmId);
      const listed = await fs.vms.list({ state: "running" });
      assert.ok(listed.vms.some((v) => v.id === vmId) && listed.runningCount >= 1);

      // exec: root by default while the image has no uid-1000 account, then that account.
      const hi = await vm.exec("echo hi && echo oops >&2 && id -un");
      assert.deepEqual([hi.stdout, hi.stderr, hi.statusCode], ["hi\nroot\n", "oops\n", 0]);
      assert.equal((await vm.exec("exit 3")).statusCode, 3);
      assert.equal((await vm.exec("useradd -m -u 1000 -s /bin/bash claude")).statusCode, 0);
      assert.equal((await vm.exec("id -un")).stdout, "claude\n", "the default user is the uid-1000 account");
      assert.equal((await vm.linuxUser("root").exec("id -u")).stdout, "0\n");
      assert.equal((await vm.linuxUser("claude").exec({ command: "id -un; pwd", timeoutMs: 10_000 })).stdout?.split("\n")[0], "claude");
      const piped = await vm.exec({ command: "cat; echo \" $FOO\"", env: { FOO: "bar" }, stdin: Buffer.from("hello stdin").toString("base64"), linuxUser: "root" });
      assert.equal(piped.stdout, "hello stdin bar\n");
      const slept = await vm.exec({ command: "sleep 5", timeoutMs: 500 });
      assert.equal(slept.statusCode, null, "a timeout is 200 with statusCode null");
      await rejectsApi(vm.linuxUser("nobody2").exec("id"), 404, "USER_NOT_FOUND");

      // files: raw bytes, sha256, decimal mode, Range, and the REST calls.
      const small = randomBytes(1024);
      const big = randomBytes(5 * 1024 * 1024 + 123);
      await vm.fs.writeFile("/root/small.bin", small);
      await vm.fs.writeFile("/root/deep/dir/big.bin", big, { mode: 0o755 });
      assert.equal(sha256(await vm.fs.readFile("/root/small.bin")), sha256(small));
      assert.equal(sha256(await vm.fs.readFile("/root/deep/dir/big.bin")), sha256(big));
      assert.equal((await vm.linuxUser("root").exec("sha256sum /root/deep/dir/big.bin")).stdout?.split(" ")[0], sha256(big), "the guest has the same bytes");
      assert.deepEqual(Buffer.from(await vm.fs.readFile("/root/deep/dir/big.bin", { offset: 1_000_000, length: 4096 })), big.subarray(1_000_000, 1_004_096));
      assert.deepEqual(Buffer.from(await vm.fs.readFile("/root/small.bin", { offset: 1000 })), small.subarray(1000));
      const st = await vm.fs.stat("/root/deep/dir/big.bin");
      assert.deepEqual([st.size, st.isFile, st.isDirectory, st.permissions, st.owner, st.group], [big.length, true, false, "0755", "root", "root"]);
      assert.equal((await vm.fs.stat("/root/small.bin")).permissions, "0600", "a new file without a mode is 0o600");
      await vm.fs.writeTextFile("/root/small.bin", "rewritten");
      assert.equal(await vm.fs.readTextFile("/root/small.bin"), "rewritten");
      assert.equal((await vm.fs.stat("/root/small.bin")).permissions, "0600", "a rewrite keeps the mode");
      await vm.fs.mkdir("/root/made/a/b");
      assert.equal(await vm.fs.exists("/root/made/a/b"), true);
      assert.deepEqual(await vm.fs.readDir("/root/made"), [{ name: "a", kind: "directory" }]);
      await vm.fs.remove("/root/made");
      assert.equal(await vm.fs.exists("/root/made"), false);
      await rejectsApi(vm.fs.readFile("/root/missing"), 404, "FILE_NOT_FOUND");

      // a snapshot (memory and disk: the VM runs on netstack), and a VM with no network booted from it.
      const { snapshotId, snapshot } = await vm.snapshot({ displayName: "with claude" });
      assert.equal(snapshot.id, snapshotId);
      assert.equal((snapshot as unknown as { contents: string }).contents, "memory+disk");
      assert.equal((await fs.vms.snapshots.get(snapshotId)).displayName, "with claude");
      assert.deepEqual(
        (await fs.vms.snapshots.list({ sourceVmId: vmId })).snapshots.map((s) => s.id),
        [snapshotId],
      );
      const booted = await fs.vms.create({ snapshotId, firewall: NOTHING, idleTimeoutSeconds: -1 });
      copyId = booted.vmId;
      assert.deepEqual(booted.firewallRules, []);
      assert.deepEqual((await server.engine.getVm(copyId)).firewall, { rules: [] });
      assert.equal(booted.data.snapshotId, snapshotId);
      assert.equal(booted.data.idleTimeoutSeconds, null);
      assert.equal(sha256(await booted.vm.fs.readFile("/root/deep/dir/big.bin")), sha256(big));
      assert.equal((await booted.vm.exec("id -un")).stdout, "claude\n");
      await fs.vms.snapshots.delete(snapshotId);
      await rejectsApi(fs.vms.snapshots.get(snapshotId), 404, "SNAPSHOT_NOT_FOUND");
      assert.equal((await booted.vm.exec("true")).statusCode, 0, "a VM outlives the snapshot it booted from");
    } finally {
      await vm.delete();
      if (copyId) await fs.vms.delete(copyId);
    }
    await rejectsApi(fs.vms.get(vmId), 404, "VM_NOT_FOUND");
    await rejectsApi(vm.exec("true"), 404, "VM_NOT_FOUND");
  });

  it("bad input answers {code, message} with the status and code the client passes on", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, keyB } = t.get();
    const fs = client(url, keyA);
    // Rules the engine cannot express are refused, not widened or ignored.
    const inbound = { rules: [{ action: "allow" as const, source: { public: true as const }, destination: { port: 443, protocol: "tcp" as const } }] };
    const refused = await rejectsApi(fs.vms.create({ firewall: inbound }), 501, "BAD_REQUEST");
    assert.match(refused.message, /inbound rules .* not supported/);
    await rejectsApi(fs.vms.create({ firewall: NOTHING, slug: "my-vm" }), 501, "BAD_REQUEST");
    const raw = (path: string, init: RequestInit) => fs.fetch(path, init).then(async (r) => ({ status: r.status, body: (await r.json()) as { code: string; message: string } }));
    const noFirewall = await raw("/v5/vms", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    assert.equal(noFirewall.status, 400);
    assert.equal(noFirewall.body.code, "CREATE_VM_BAD_REQUEST");
    assert.match(noFirewall.body.message, /firewall/);
    await rejectsApi(client(url, "cap_wrong").vms.list(), 401, "UNAUTHORIZED");

    // Identities and background requests: coded 501s the caller sees at once. Every call above
    // carried the background header and was answered inline; each refusal below is sent once.
    const sent: string[] = [];
    const counting: typeof fetch = (input, init) => {
      sent.push(`${init?.method ?? "GET"} ${new URL(String(input)).pathname}`);
      return fetch(input, init);
    };
    const identityClient = new Freestyle({ baseUrl: url, identityAccessToken: "tok_from_freestyle", fetch: counting });
    const noIdentities = await rejectsApi(identityClient.vms.list(), 501, "BAD_REQUEST");
    assert.match(noIdentities.message, /identity access tokens are not supported/);
    await rejectsApi(identityClient.vms.ref("vm-any").exec("true"), 501, "BAD_REQUEST");
    await rejectsApi(client(url, keyA, counting).identities.create(), 501, "BAD_REQUEST");
    await rejectsApi(client(url, keyA, counting).identities.list(), 501, "BAD_REQUEST");
    const identity = client(url, keyA, counting).identities.ref("idn-1");
    await rejectsApi(identity.tokens.create(), 501, "BAD_REQUEST");
    await rejectsApi(identity.permissions.vm.grant({ vmId: "vm-any", allowedLinuxUsers: ["root"] }), 501, "BAD_REQUEST");
    const polled = await raw("/v5/background-requests/req-1", { method: "GET" });
    assert.deepEqual([polled.status, polled.body.code], [501, "BAD_REQUEST"]);
    assert.deepEqual(sent, ["GET /v5/vms", "POST /v5/vms/vm-any/exec-await", "POST /v5/identities", "GET /v5/identities", "POST /v5/identities/idn-1/tokens", "POST /v5/identities/idn-1/permissions/vm"], "no retries");

    const { vm, vmId } = await fs.vms.create({ firewall: NOTHING });
    try {
      await rejectsApi(client(url, keyB).vms.get(vmId), 404, "VM_NOT_FOUND");
      await rejectsApi(client(url, keyB).vms.ref(vmId).exec("true"), 404, "VM_NOT_FOUND");
      await rejectsApi(vm.exec({ command: "env", env: { "BAD-NAME": "x" } }), 400, "VALIDATION_ERROR");
      await rejectsApi(vm.exec({ command: "cat", stdin: "not base64!" }), 400, "VALIDATION_ERROR");
      await rejectsApi(vm.fs.readFile("relative.txt"), 400, "FILES_BAD_REQUEST");
      await rejectsApi(vm.fs.readFile("/root/../etc/passwd"), 400, "FILES_BAD_REQUEST");
      await rejectsApi(vm.fs.readFile("/etc/hostname", { offset: 1_000_000 }), 416, "FILES_BAD_REQUEST");
      await rejectsApi(vm.fs.readFile("/root"), 400, "FILES_BAD_REQUEST");
      await rejectsApi(client(url, keyB).vms.ref(vmId).pause(), 404, "VM_NOT_FOUND");

      // A body that does not match its sha256 writes nothing.
      await vm.fs.writeTextFile("/root/kept.txt", "old");
      const wrong = await raw(`/v5/vms/${vmId}/fs/write?path=%2Froot%2Fkept.txt&sha256=${"0".repeat(64)}`, { method: "PUT", headers: { "content-type": "application/octet-stream" }, body: "new bytes" });
      assert.equal(wrong.status, 400);
      assert.equal(wrong.body.code, "FILES_BAD_REQUEST");
      assert.match(wrong.body.message, /sha256/);
      assert.equal(await vm.fs.readTextFile("/root/kept.txt"), "old");
      assert.equal((await vm.exec("ls -a /root | grep -c capsule-write || true")).stdout, "0\n", "no temp file is left behind");
      const octal = await raw(`/v5/vms/${vmId}/fs/write?path=%2Froot%2Fm.txt&mode=0o755`, { method: "PUT", body: "x" });
      assert.equal(octal.status, 400);
      assert.equal(octal.body.code, "FILES_BAD_REQUEST");
    } finally {
      await vm.delete();
    }
  });
});

describe("official client 0.2.17 on a server without egress", () => {
  // Keep-alive after 300 ms (not 25 s), so a long exec's early-headers answer is exercised quickly.
  const t = useServer({ limits: { execKeepaliveAfterMs: 300, execKeepaliveEveryMs: 200 } });

  it("a firewall that allows the internet is refused, one that allows nothing is served", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const fs = client(t.get().url, t.get().keyA);
    const err = await rejectsApi(fs.vms.create({ firewall: INTERNET }), 400, "CREATE_VM_BAD_REQUEST");
    assert.match(err.message, /no network access/);
    const { vm } = await fs.vms.create({ firewall: NOTHING });
    try {
      assert.equal((await vm.exec("echo ok")).stdout, "ok\n");
      // A timeout past the client's 300 s header wait: 200 headers early, spaces, then the JSON.
      const long = await vm.exec({ command: "sleep 1; echo done", timeoutMs: 600_000 });
      assert.deepEqual([long.stdout, long.statusCode], ["done\n", 0]);
      const r = await fs.fetch(`/v5/vms/${vm.id}/exec-await`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ command: "sleep 1; exit 4", timeoutMs: 600_000 }) });
      const text = await r.text();
      assert.match(text, /^ +\{/, "keep-alive spaces before the JSON");
      assert.equal(JSON.parse(text).statusCode, 4);
    } finally {
      await vm.delete();
    }
  });
});

import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import { Readable } from "node:stream";
import { describe, it } from "node:test";
import { useEngine } from "../test-support/harness.js";

describe("files", () => {
  const t = useEngine();
  let vm: string;

  it("writes and reads back a 64 MiB binary file with the same sha256, streamed", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    vm = (await engine.createVm()).id;
    const size = 64 * 1024 * 1024;
    const hash = crypto.createHash("sha256");
    let sent = 0;
    // Generated on the fly: the test itself never holds the whole file.
    const source = new Readable({
      read() {
        if (sent >= size) return void this.push(null);
        const chunk = crypto.randomBytes(1024 * 1024);
        hash.update(chunk);
        sent += chunk.length;
        this.push(chunk);
      },
    });
    await engine.guest.writeFile(vm, "/srv/blob.bin", source);
    const expected = hash.digest("hex");
    const inVm = await engine.guest.exec(vm, { command: "sha256sum /srv/blob.bin | cut -d' ' -f1" });
    assert.equal(inVm.stdout.trim(), expected);
    const { size: got, stream } = await engine.guest.readFileStream(vm, "/srv/blob.bin");
    assert.equal(got, size);
    const back = crypto.createHash("sha256");
    for await (const c of stream) back.update(c as Buffer);
    assert.equal(back.digest("hex"), expected);
  });

  it("reads with offset and length, writes text, lists, stats, removes", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    await engine.guest.writeFile(vm, "/srv/dir/a.txt", "0123456789", { mkdirs: true });
    assert.equal((await engine.guest.readFile(vm, "/srv/dir/a.txt", { offset: 3, length: 4 })).toString(), "3456");
    assert.deepEqual(await engine.guest.list(vm, "/srv/dir"), [{ name: "a.txt", kind: "file" }]);
    assert.equal((await engine.guest.stat(vm, "/srv/dir/a.txt")).size, 10);
    assert.equal(await engine.guest.exists(vm, "/srv/dir/nope"), false);
    await engine.guest.remove(vm, "/srv/dir", { recursive: true });
    assert.equal(await engine.guest.exists(vm, "/srv/dir"), false);
  });

  it("resolves symlinks and .. inside the VM: a link to /etc/shadow never reads the host's", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const mk = await engine.guest.exec(vm, { command: "ln -s /etc/shadow /tmp/link && echo 'vm-marker' > /etc/marker && ln -s ../../../../../../etc/marker /tmp/rel" });
    assert.equal(mk.exitCode, 0);
    const viaLink = (await engine.guest.readFile(vm, "/tmp/link")).toString();
    const vmShadow = (await engine.guest.exec(vm, { command: "cat /etc/shadow" })).stdout;
    assert.equal(viaLink, vmShadow);
    assert.notEqual(viaLink, fs.readFileSync("/etc/shadow", "utf8"));
    assert.equal((await engine.guest.readFile(vm, "/tmp/rel")).toString(), "vm-marker\n");
    assert.equal((await engine.guest.readFile(vm, "/../../../../etc/marker")).toString(), "vm-marker\n");
  });

  it("rejects relative paths and reports missing files by code", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    await assert.rejects(engine.guest.readFile(vm, "etc/passwd"), (e: Error & { agentCode?: string }) => e.agentCode === "BAD_REQUEST");
    await assert.rejects(engine.guest.readFile(vm, "/no/such/file"), (e: Error & { agentCode?: string }) => e.agentCode === "FILE_NOT_FOUND");
  });

  it("user-scoped writes are owned by the user; user-scoped reads honour permissions", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    await engine.guest.exec(vm, { command: "useradd -m bob && echo topsecret > /root/secret && chmod 600 /root/secret" });
    await engine.guest.writeFile(vm, "/home/bob/notes.txt", "mine", { user: "bob" });
    const owner = await engine.guest.exec(vm, { command: "stat -c %U:%G /home/bob/notes.txt" });
    assert.equal(owner.stdout.trim(), "bob:bob");
    await assert.rejects(engine.guest.readFile(vm, "/root/secret", { user: "bob" }), (e: Error & { agentCode?: string }) => e.agentCode === "PERMISSION_DENIED");
    await assert.rejects(engine.guest.writeFile(vm, "/etc/evil", "x", { user: "bob" }), (e: Error & { agentCode?: string }) => e.agentCode === "PERMISSION_DENIED");
  });
});

/**
 * What the SDK took from freestyle 0.2 where it is better: `vm.exec({ env, stdin })` and byte
 * ranges of `vm.fs.readFile` / `createReadStream` (an HTTP `Range` on `/v1` files-raw). One VM.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import type { Readable } from "node:stream";
import { describe, it } from "node:test";
import { MAX_EXEC_STDIN_BYTES } from "@capsule/contract/schemas";
import { Capsule, type CapsuleError, type Vm } from "@capsule/sdk";
import { sha256, useServer } from "../test-support/server.js";

async function collect(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** A rejection that is a CapsuleError with this code and status, and a message matching `re`. */
function refused(code: string, status: number | undefined, re: RegExp) {
  return (e: CapsuleError) => {
    assert.equal(e.code, code, e.message);
    assert.equal(e.status, status, e.message);
    assert.match(e.message, re);
    return true;
  };
}

describe("vm.exec env and stdin; fs byte ranges", () => {
  const t = useServer();
  let vm: Vm | undefined;

  it("env reaches the command; stdin (text or bytes) is its input, then EOF; as root and as a user", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const capsule = new Capsule({ apiUrl: t.get().url, apiKey: t.get().keyA });
    vm = (await capsule.vms.create({ idleTimeoutSeconds: null })).vm;

    // Values arrive as given: no shell expansion, quotes kept, empty is set.
    const env = await vm.exec({ command: "printenv GREETING; printenv EMPTY; printenv QUOTED", env: { GREETING: "hi there", EMPTY: "", QUOTED: "it's $HOME" } });
    assert.deepEqual(env, { stdout: "hi there\n\nit's $HOME\n", stderr: "", statusCode: 0 });

    assert.deepEqual(await vm.exec({ command: "cat", stdin: "line 1\nline 2 é\n" }), { stdout: "line 1\nline 2 é\n", stderr: "", statusCode: 0 });
    // Bytes at the limit exactly, through a checksum (the output is text).
    const bytes = randomBytes(MAX_EXEC_STDIN_BYTES);
    const sum = await vm.exec({ command: "sha256sum | cut -d' ' -f1; echo \"$N\"", stdin: new Uint8Array(bytes), env: { N: "n" } });
    assert.deepEqual(sum, { stdout: `${sha256(bytes)}\nn\n`, stderr: "", statusCode: 0 });
    // Without stdin the input is at EOF at once: cat ends.
    assert.deepEqual(await vm.exec({ command: "cat; echo done" }), { stdout: "done\n", stderr: "", statusCode: 0 });

    await vm.exec("useradd -m alice");
    const alice = await vm.user({ username: "alice" }).exec({ command: "id -un; cat; printenv WHO", stdin: Buffer.from("from stdin\n"), env: { WHO: "alice's env" } });
    assert.deepEqual(alice, { stdout: "alice\nfrom stdin\nalice's env\n", stderr: "", statusCode: 0 });

    // A command that never reads its stdin still exits, with its status.
    assert.deepEqual(await vm.exec({ command: "exit 3", stdin: "ignored" }), { stdout: "", stderr: "", statusCode: 3 });
    // The timeout holds with stdin too.
    await assert.rejects(vm.exec({ command: "sleep 30", stdin: "x", timeoutMs: 500 }), refused("EXEC_TIMED_OUT", 408, /timed out/));
  });

  it("a stdin over the limit and an invalid env name are refused with {code, message}; nothing runs", async (ctx) => {
    if (t.skip() || !vm) return ctx.skip(String(t.skip() || "no VM"));
    await assert.rejects(
      vm.exec({ command: "touch /tmp/ran", stdin: Buffer.alloc(MAX_EXEC_STDIN_BYTES + 1) }),
      refused("VALIDATION_ERROR", 400, new RegExp(`body\\.stdin: over the limit of ${MAX_EXEC_STDIN_BYTES} bytes`)),
    );
    await assert.rejects(vm.exec({ command: "touch /tmp/ran", env: { "BAD-NAME": "x" } }), refused("VALIDATION_ERROR", 400, /body\.env\.BAD-NAME: must be a shell variable name/));
    assert.equal((await vm.exec("test -e /tmp/ran")).statusCode, 1);
  });

  it("readFile and createReadStream with offset/length read those bytes; past the end is FILES_BAD_REQUEST (416)", async (ctx) => {
    if (t.skip() || !vm) return ctx.skip(String(t.skip() || "no VM"));
    const data = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7) % 256));
    await vm.fs.writeFile("/tmp/known.bin", data);

    assert.deepEqual(await vm.fs.readFile("/tmp/known.bin"), data, "no options: the whole file, as before");
    assert.deepEqual(await vm.fs.readFile("/tmp/known.bin", { offset: 100, length: 50 }), data.subarray(100, 150));
    assert.deepEqual(await vm.fs.readFile("/tmp/known.bin", { offset: 2990 }), data.subarray(2990));
    assert.deepEqual(await vm.fs.readFile("/tmp/known.bin", { length: 10 }), data.subarray(0, 10));
    assert.deepEqual(await vm.fs.readFile("/tmp/known.bin", { offset: 2999, length: 100 }), data.subarray(2999), "a length past the end stops there");
    assert.deepEqual(await collect(await vm.fs.createReadStream("/tmp/known.bin", { offset: 1234, length: 1000 })), data.subarray(1234, 2234));
    assert.deepEqual(await vm.user({ username: "alice" }).fs.readFile("/tmp/known.bin", { offset: 5, length: 5 }), data.subarray(5, 10), "as a user");

    await assert.rejects(vm.fs.readFile("/tmp/known.bin", { offset: 3000 }), refused("FILES_BAD_REQUEST", 416, /range not satisfiable: the file is 3000 bytes/));
    await assert.rejects(vm.fs.createReadStream("/tmp/known.bin", { offset: 5000, length: 1 }), refused("FILES_BAD_REQUEST", 416, /the file is 3000 bytes/));
    await assert.rejects(vm.fs.readFile("/tmp/known.bin", { offset: 0, length: 0 }), refused("VALIDATION_ERROR", undefined, /length must be a whole number of bytes, 1 or more/));
    await assert.rejects(vm.fs.readFile("/tmp/known.bin", { offset: -1 }), refused("VALIDATION_ERROR", undefined, /offset must be/));
  });

  it("the same range through a caller's fetch (web streams, not node:http)", async (ctx) => {
    if (t.skip() || !vm) return ctx.skip(String(t.skip() || "no VM"));
    const viaFetch = new Capsule({ apiUrl: t.get().url, apiKey: t.get().keyA, fetch: (input, init) => fetch(input, init) }).vms.ref({ vmId: vm.vmId });
    const data = await vm.fs.readFile("/tmp/known.bin");
    assert.deepEqual(await viaFetch.fs.readFile("/tmp/known.bin", { offset: 100, length: 50 }), data.subarray(100, 150));
    assert.deepEqual(await collect(await viaFetch.fs.createReadStream("/tmp/known.bin", { offset: 2000 })), data.subarray(2000));
    await assert.rejects(viaFetch.fs.readFile("/tmp/known.bin", { offset: 3000 }), refused("FILES_BAD_REQUEST", 416, /range not satisfiable/));
    await vm.delete();
  });
});

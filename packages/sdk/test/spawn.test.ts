/** `vm.spawn()` on the streaming exec, and large files streamed both ways. One VM. */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { describe, it } from "node:test";
import { Capsule, type Vm } from "@capsule/sdk";
import { spawnInVm } from "../test-support/seed-bridge.js";
import { sha256, until, useServer } from "../test-support/server.js";

async function collect(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe("vm.spawn and streamed files", () => {
  const t = useServer();
  let vm: Vm | undefined;

  it("pipes 10 MB through cat: same sha256 back; stdin EOF ends cat", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const capsule = new Capsule({ apiUrl: t.get().url, apiKey: t.get().keyA });
    vm = (await capsule.vms.create({ idleTimeoutSeconds: null })).vm;
    const data = randomBytes(10 * 1024 * 1024);
    const p = vm.spawn("cat");
    const out = collect(p.stdout);
    const err = collect(p.stderr);
    Readable.from([data.subarray(0, 3_000_000), data.subarray(3_000_000)]).pipe(p.stdin); // ends stdin → EOF
    const exit = await p.exited;
    assert.deepEqual(exit, { code: 0, signal: null, timedOut: false });
    const back = await out;
    assert.equal(back.length, data.length);
    assert.equal(sha256(back), sha256(data));
    assert.equal((await err).length, 0);
    assert.ok((await p.started).pid > 0);
  });

  it("exit codes, stderr, cwd, env, user; kill()", async (ctx) => {
    if (t.skip() || !vm) return ctx.skip(String(t.skip() || "no VM"));
    const a = vm.spawn("echo out; echo err >&2; pwd; echo \"$GREETING\"; exit 7", { cwd: "/tmp", env: { GREETING: "it's me" } });
    const [out, err, exit] = await Promise.all([collect(a.stdout), collect(a.stderr), a.exited]);
    assert.equal(out.toString(), "out\n/tmp\nit's me\n");
    assert.equal(err.toString(), "err\n");
    assert.equal(exit.code, 7);

    await vm.exec("useradd -m alice");
    const who = vm.user({ username: "alice" }).spawn("id -un");
    assert.equal((await collect(who.stdout)).toString(), "alice\n");
    assert.equal((await who.exited).code, 0);

    const sleeper = vm.spawn("sleep 100");
    sleeper.stdout.resume();
    await sleeper.started;
    const t0 = Date.now();
    sleeper.kill();
    const k = await sleeper.exited;
    assert.equal(k.code, 137);
    assert.equal(k.signal, "SIGKILL");
    assert.ok(Date.now() - t0 < 10_000);

    const term = vm.spawn("trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.1; done");
    term.stdout.once("data", () => term.kill("SIGTERM"));
    const termOut = collect(term.stdout);
    assert.equal((await term.exited).code, 3);
    assert.match((await termOut).toString(), /got-term/);

    await assert.rejects(vm.user({ username: "nobody-here" }).spawn("true").exited, (e: Error & { code?: string }) => e.code === "USER_NOT_FOUND");
  });

  it("streams a 100 MB file up and down with matching sha256", async (ctx) => {
    if (t.skip() || !vm) return ctx.skip(String(t.skip() || "no VM"));
    const size = 100 * 1024 * 1024;
    const chunk = randomBytes(1024 * 1024);
    const chunks = Array.from({ length: size / chunk.length }, (_, i) => Buffer.concat([Buffer.from([i]), chunk.subarray(1)]));
    const want = sha256(Buffer.concat(chunks));
    await vm.fs.writeFile("/root/big.bin", Readable.from(chunks));
    const inVm = await vm.exec("sha256sum /root/big.bin | cut -d' ' -f1");
    assert.equal(inVm.stdout?.trim(), want);
    const down = await vm.fs.createReadStream("/root/big.bin");
    const { createHash } = await import("node:crypto");
    const h = createHash("sha256");
    let n = 0;
    for await (const c of down) {
      h.update(c as Buffer);
      n += (c as Buffer).length;
    }
    assert.equal(n, size);
    assert.equal(h.digest("hex"), want);
    // Buffers too, and the mode option.
    await vm.fs.writeFile("/root/run.sh", "#!/bin/sh\necho ran\n", { mode: 0o755 });
    assert.equal((await vm.exec("/root/run.sh")).stdout, "ran\n");
    assert.equal((await vm.fs.readFile("/root/run.sh")).toString(), "#!/bin/sh\necho ran\n");
  });

  // The seed's bridge types its bootstrap line (with a raw 0x1E sentinel) the moment the PTY
  // opens. gVisor's line discipline echoes control bytes raw, so the agent holds a new
  // session's input until the shell's first output, when readline echoes (as ^^) instead.
  it("the seed's Agent SDK bridge (spawnInVm) over vm.pty", async (ctx) => {
    if (t.skip() || !vm) return ctx.skip(String(t.skip() || "no VM"));
    await vm.fs.writeTextFile(
      "/root/.local/bin/fake-agent",
      `#!/bin/sh\nwhile IFS= read -r line; do printf '{"type":"result","echo":%s,"args":"%s","key":"%s"}\\n' "$line" "$*" "$ANTHROPIC_API_KEY"; done\n`,
    );
    await vm.exec("chmod 755 /root/.local/bin/fake-agent");
    const abort = new AbortController();
    const proc = spawnInVm(vm)({ command: "/root/.local/bin/fake-agent", args: ["--output-format", "stream-json"], env: { ANTHROPIC_API_KEY: "sk-bridge", OTHER: "dropped" }, signal: abort.signal });
    let exitedWith: unknown;
    proc.once("exit", (code: unknown) => (exitedWith = code));
    let got = "";
    proc.stdout.on("data", (b: Buffer) => (got += b.toString("utf8")));
    proc.stdin.write(`${JSON.stringify({ type: "user", text: "hi \u00e9\u001e" })}\n`);
    await until(() => got.includes("\n"), 15_000, "a bridged NDJSON line");
    const line = JSON.parse(got.slice(0, got.indexOf("\n"))) as { type: string; echo: { text: string }; args: string; key: string };
    assert.deepEqual(line, { type: "result", echo: { type: "user", text: "hi \u00e9\u001e" }, args: "--output-format stream-json", key: "sk-bridge" });
    abort.abort();
    await until(() => exitedWith !== undefined, 10_000, "the bridge's exit after abort");
    assert.equal(exitedWith, 0);
  });

  it("cleanup", async () => {
    await vm?.delete();
  });
});

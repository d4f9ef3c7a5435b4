/**
 * `vm.spawn({ env })` and `claudeCodeSpawner` (which carries ANTHROPIC_API_KEY) send the
 * environment as data: a recording TCP relay in front of the server sees every request line,
 * and the secret is in none of them, while the process still gets it.
 */
import assert from "node:assert/strict";
import net from "node:net";
import type { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { Capsule, claudeCodeSpawner, type Vm } from "@capsule/sdk";
import { useServer } from "../test-support/server.js";

async function collect(r: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** A relay to `target` that records the request line of every HTTP request (upgrades included) sent through it. */
async function recordingRelay(target: string): Promise<{ url: string; requestLines: string[]; close: () => Promise<void> }> {
  const { hostname, port } = new URL(target);
  const requestLines: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => sockets.delete(s));
    }
    // One side gone (the server closed, say) ends the other, so no request through the relay hangs.
    upstream.on("close", () => client.destroy());
    client.on("close", () => upstream.destroy());
    client.on("data", (d: Buffer) => {
      for (const m of d.toString("latin1").matchAll(/(?:^|\r\n)([A-Z]+ \S+ HTTP\/1\.1)\r\n/g)) if (m[1]) requestLines.push(m[1]);
    });
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return {
    url,
    requestLines,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

describe("no secrets in URLs", () => {
  const t = useServer();
  let relay: Awaited<ReturnType<typeof recordingRelay>> | undefined;
  let vm: Vm | undefined;
  before(async () => {
    if (!t.skip()) relay = await recordingRelay(t.get().url);
  });
  // Runs before the server harness's own clean-up (which deletes whatever VM is left).
  after(async () => {
    await relay?.close();
  });

  it("vm.spawn env and claudeCodeSpawner's ANTHROPIC_API_KEY reach the process and no URL", async (ctx) => {
    if (t.skip() || !relay) return ctx.skip(String(t.skip()));
    const capsule = new Capsule({ apiUrl: relay.url, apiKey: t.get().keyA });
    vm = (await capsule.vms.create({ idleTimeoutSeconds: null })).vm;
    const secret = "s3cr3t-env-value-7f2a";
    const p = vm.spawn('printf %s "$SECRET_TOKEN"', { env: { SECRET_TOKEN: secret } });
    const out = collect(p.stdout);
    p.stdin.end();
    assert.equal((await p.exited).code, 0);
    assert.equal(await out, secret);

    const apiKey = "sk-ant-api03-not-a-real-key-91c4";
    const child = claudeCodeSpawner(vm, { executable: "/bin/sh" })({ command: "claude", args: ["-c", 'printf %s "$ANTHROPIC_API_KEY"'], env: { ANTHROPIC_API_KEY: apiKey, UNRELATED: "x" }, signal: new AbortController().signal });
    const claudeOut = collect(child.stdout);
    child.stdin.end();
    assert.equal(await claudeOut, apiKey);

    const lines = relay.requestLines;
    assert.ok(lines.filter((l) => l.includes("/exec-stream")).length >= 2, `the relay saw the exec-streams: ${lines.join(", ")}`);
    for (const l of lines) {
      for (const s of [secret, apiKey]) assert.ok(!l.includes(s) && !l.includes(encodeURIComponent(s)), `a secret in a URL: ${l}`);
      assert.ok(!/SECRET_TOKEN|ANTHROPIC_API_KEY/.test(decodeURIComponent(l)), `an env name in a URL: ${l}`);
    }
  });
});

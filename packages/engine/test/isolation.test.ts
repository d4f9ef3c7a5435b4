import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { HOST_ALIAS_IPV4 } from "../src/index.js";
import { hostTcpServer, useEngine } from "../test-support/harness.js";

const NODE = "/.capsule/lib/ld-linux-x86-64.so.2 --library-path /.capsule/lib /.capsule/bin/node";
/** bash's /dev/tcp: exit 0 and the server's line if it connects, non-zero otherwise. */
const probe = (host: string, port: number) => `timeout 3 bash -c 'exec 3<>/dev/tcp/${host}/${port} && head -1 <&3'`;

describe("isolation", () => {
  let allowed: Awaited<ReturnType<typeof hostTcpServer>>;
  let forbidden: Awaited<ReturnType<typeof hostTcpServer>>;
  let loopbackOnly: Awaited<ReturnType<typeof hostTcpServer>>;
  before(async () => {
    allowed = await hostTcpServer("0.0.0.0");
    forbidden = await hostTcpServer("0.0.0.0");
    loopbackOnly = await hostTcpServer("127.0.0.1");
  });
  after(async () => {
    await Promise.all([allowed.close(), forbidden.close(), loopbackOnly.close()]);
  });
  const t = useEngine(() => ({ allowedHostPorts: [allowed.port] }));

  it("two VMs see neither each other's processes, files nor network", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const a = await engine.createVm();
    const b = await engine.createVm();
    await engine.guest.exec(a.id, { command: "echo only-a > /tmp/mine" });
    const server = await engine.guest.spawn(b.id, {
      command: `exec ${NODE} -e "require('net').createServer(s=>s.end('b-says-hi\\n')).listen(7777,()=>console.log('up'))"`,
    });
    await new Promise<void>((r) => server.stdout.once("data", () => r()));

    const ps = await engine.guest.exec(a.id, { command: "ps -eo args" });
    assert.doesNotMatch(ps.stdout, /createServer/);
    assert.equal((await engine.guest.exec(b.id, { command: "test -e /tmp/mine && echo visible || echo absent" })).stdout, "absent\n");

    // Positive control: the host reaches B's server; A does not.
    const fromHost = await (await import("node:net")).connect(7777, b.ip!);
    const hostLine = await new Promise<string>((r) => fromHost.once("data", (d: Buffer) => r(d.toString())));
    assert.equal(hostLine, "b-says-hi\n");
    const fromA = await engine.guest.exec(a.id, { command: probe(b.ip!, 7777) });
    assert.notEqual(fromA.exitCode, 0);
    server.kill();
  });

  it("a VM cannot reach the host's loopback or ports, except the allowed ones by a stable name", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const vm = await engine.createVm();
    const gw = vm.gatewayIp!;
    for (const [host, port] of [
      ["127.0.0.1", loopbackOnly.port],
      ["127.0.0.1", forbidden.port],
      [gw, forbidden.port],
      [gw, loopbackOnly.port],
    ] as const) {
      const r = await engine.guest.exec(vm.id, { command: probe(host, port) });
      assert.notEqual(r.exitCode, 0, `VM reached ${host}:${port}`);
    }
    const ok = await engine.guest.exec(vm.id, { command: probe("host.capsule.internal", allowed.port) });
    assert.equal(ok.stdout, "host-says-hi\n", ok.stderr);
    const byIp = await engine.guest.exec(vm.id, { command: probe(gw, allowed.port) });
    assert.equal(byIp.stdout, "host-says-hi\n");
    // The stable name is one address in every VM (a memory copy keeps it), sent to this VM's gateway.
    assert.equal((await engine.guest.exec(vm.id, { command: "getent hosts host.capsule.internal" })).stdout.split(/\s+/)[0], HOST_ALIAS_IPV4);
    const byAlias = await engine.guest.exec(vm.id, { command: probe(HOST_ALIAS_IPV4, allowed.port) });
    assert.equal(byAlias.stdout, "host-says-hi\n", byAlias.stderr);
    for (const port of [forbidden.port, loopbackOnly.port]) {
      const r = await engine.guest.exec(vm.id, { command: probe(HOST_ALIAS_IPV4, port) });
      assert.notEqual(r.exitCode, 0, `VM reached the host alias on ${port}`);
    }
    // The allowed port only at the VM's own gateway: not at another VM's, nor at the host's other addresses.
    const other = await engine.createVm();
    const hostAddrs = execFileSync("ip", ["-4", "-o", "addr", "show", "scope", "global"], { encoding: "utf8" })
      .split("\n")
      .filter((l) => l && !/^\d+:\s+cv/.test(l))
      .map((l) => /inet (\d+\.\d+\.\d+\.\d+)/.exec(l)?.[1])
      .filter((a): a is string => a !== undefined);
    for (const host of [other.gatewayIp!, ...hostAddrs]) {
      const r = await engine.guest.exec(vm.id, { command: probe(host, allowed.port) });
      assert.notEqual(r.exitCode, 0, `VM reached the allowed port at ${host}, not its own gateway`);
    }
    const fromOther = await engine.guest.exec(other.id, { command: probe("host.capsule.internal", allowed.port) });
    assert.equal(fromOther.stdout, "host-says-hi\n", "the other VM at its own gateway");
  });
});

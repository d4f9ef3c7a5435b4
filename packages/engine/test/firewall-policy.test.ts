/**
 * Per-VM firewall policies on real sandboxes, checked from inside the VMs. Every target is on this
 * machine: listeners on the host (at VMs' gateway addresses, or on all addresses), listeners inside
 * other test VMs, and a scratch network namespace this file makes outside the VM subnet (the one
 * kind of destination a CIDR rule can open here). No traffic leaves the machine.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import { after, before, describe, it } from "node:test";
import { HOST_ALIAS_IPV4, type FirewallPolicy, type VmInfo } from "../src/index.js";
import { hostTcpServer, useEngine } from "../test-support/harness.js";

const NODE = "/.capsule/lib/ld-linux-x86-64.so.2 --library-path /.capsule/lib /.capsule/bin/node";
/** bash's /dev/tcp from inside a VM: the server's line if it connects, a non-zero exit otherwise. */
const probe = (host: string, port: number) => `timeout 3 bash -c 'exec 3<>/dev/tcp/${host}/${port} && head -1 <&3'`;
const hostIf = (id: string) => `cv${id.slice(-12)}`;
const ruleset = () => execFileSync("nft", ["list", "ruleset"], { encoding: "utf8" });

type HostServer = Awaited<ReturnType<typeof hostTcpServer>>;

/**
 * A network namespace with one veth to the host, outside the VM subnet: the namespace has
 * `inside` and `beyond` (routed through it), the host has `hostEnd` (a host address, in the same /24
 * as `inside`). A node listener inside answers on every address.
 */
async function scratchNet(port: number): Promise<{ inside: string; beyond: string; hostEnd: string; close: () => Promise<void> }> {
  const tag = crypto.randomBytes(3).toString("hex");
  const ns = `fwtest-${tag}`;
  const [hostSide, nsSide] = [`fwh${tag}`, `fwn${tag}`];
  const ip = (...args: string[]) => execFileSync("ip", args, { stdio: "pipe" });
  ip("netns", "add", ns);
  let server: ChildProcess | undefined;
  const close = async () => {
    server?.kill();
    // Deleting the namespace takes the veth (and the route through it) with it.
    execFileSync("ip", ["netns", "del", ns], { stdio: "ignore" });
  };
  try {
    ip("link", "add", hostSide, "type", "veth", "peer", "name", nsSide, "netns", ns);
    ip("addr", "add", "10.251.7.1/24", "dev", hostSide);
    ip("link", "set", hostSide, "up");
    ip("-n", ns, "addr", "add", "10.251.7.2/24", "dev", nsSide);
    ip("-n", ns, "addr", "add", "10.251.8.2/24", "dev", nsSide);
    ip("-n", ns, "link", "set", nsSide, "up");
    ip("-n", ns, "route", "add", "default", "via", "10.251.7.1");
    ip("route", "add", "10.251.8.0/24", "via", "10.251.7.2");
    server = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", `require("net").createServer((s) => s.end("ns-says-hi\\n")).listen(${port}, () => console.log("up"))`], { stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((resolve, reject) => {
      server!.stdout!.once("data", () => resolve());
      server!.once("exit", (code) => reject(new Error(`scratch listener exited ${String(code)}`)));
    });
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
  return { inside: "10.251.7.2", beyond: "10.251.8.2", hostEnd: "10.251.7.1", close };
}

describe("per-VM firewall policies", () => {
  let open: HostServer;
  let other: HostServer;
  before(async () => {
    [open, other] = await Promise.all([hostTcpServer("0.0.0.0"), hostTcpServer("0.0.0.0")]);
  });
  after(async () => {
    await Promise.all([open.close(), other.close()]);
  });
  // Both ports are listed, so only a VM's own policy can keep it from either.
  const t = useEngine(() => ({ allowedHostPorts: [open.port, other.port] }));

  const reaches = async (vm: VmInfo, host: string, port: number): Promise<boolean> => {
    const r = await t.get().engine.guest.exec(vm.id, { command: probe(host, port) });
    return r.exitCode === 0 && r.stdout.endsWith("-says-hi\n");
  };
  /** A node listener inside a VM on each port. */
  const listenIn = async (vm: VmInfo, ports: number[]) => {
    const p = await t.get().engine.guest.spawn(vm.id, {
      command: `exec ${NODE} -e "for (const p of [${ports.join(",")}]) require('net').createServer(s=>s.end('vm-says-hi\\n')).listen(p); console.log('up')"`,
    });
    await new Promise<void>((r) => p.stdout.once("data", () => r()));
    return p;
  };

  it("a VM whose policy allows nothing reaches neither host ports, nor other VMs, nor its gateway's listeners", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const peer = await engine.createVm();
    const vm = await engine.createVm({ firewall: { rules: [] } });
    assert.deepEqual(vm.firewall, { rules: [] });
    const server = await listenIn(peer, [7777]);
    const atGateway = await hostTcpServer(vm.gatewayIp!);
    try {
      // Controls: the policy-less VM of the same engine reaches the listed ports, as /v1 VMs do.
      assert.ok(await reaches(peer, peer.gatewayIp!, open.port));
      for (const [host, port] of [
        [vm.gatewayIp!, open.port],
        [vm.gatewayIp!, other.port],
        ["host.capsule.internal", open.port],
        [HOST_ALIAS_IPV4, open.port],
        [vm.gatewayIp!, atGateway.port],
        [peer.gatewayIp!, open.port],
        ["127.0.0.1", open.port],
        [peer.ip!, 7777],
      ] as const) {
        assert.equal(await reaches(vm, host, port), false, `reached ${host}:${port}`);
      }
    } finally {
      server.kill();
      await atGateway.close();
    }
  });

  it("a host port rule opens that one port at the VM's own gateway, and survives a restart", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const neighbour = await engine.createVm({ firewall: { rules: [] } });
    let vm = await engine.createVm({ firewall: { rules: [{ to: "host", protocol: "tcp", port: open.port }] } });
    const check = async () => {
      assert.ok(await reaches(vm, vm.gatewayIp!, open.port), "the allowed port");
      assert.ok(await reaches(vm, "host.capsule.internal", open.port), "the allowed port by name");
      assert.ok(await reaches(vm, HOST_ALIAS_IPV4, open.port), "the allowed port at the host alias");
      assert.equal(await reaches(vm, vm.gatewayIp!, other.port), false, "another listed port");
      assert.equal(await reaches(vm, HOST_ALIAS_IPV4, other.port), false, "another listed port at the host alias");
      // The host's other addresses stay closed, even on the allowed port.
      assert.equal(await reaches(vm, neighbour.gatewayIp!, open.port), false, "another VM's gateway");
    };
    await check();
    await engine.stopVm(vm.id);
    assert.doesNotMatch(ruleset(), new RegExp(hostIf(vm.id)), "a stopped VM keeps no rules");
    // What a teardown killed half-way leaves: the host alias still mapped to an old gateway.
    execFileSync("nft", ["add", "element", "inet", "capsule", "vm_gateway", `{ "${hostIf(vm.id)}" : 10.213.255.253 }`]);
    vm = await engine.startVm(vm.id);
    await check();
    const id = vm.id;
    await engine.deleteVm(id, { wait: true });
    assert.doesNotMatch(ruleset(), new RegExp(hostIf(id)), "a deleted VM's chains and map entries are gone");
  });

  it("a memory copy of a VM with a host port rule reaches that port at the address a process looked up before the capture", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    if (!engine.features.checkpoint) return ctx.skip(`runsc cannot checkpoint on the ${engine.features.network} network stack`);
    const src = await engine.createVm({ firewall: { rules: [{ to: "host", protocol: "tcp", port: open.port }] } });
    // Looks the name up once, then connects to that address each time /root/go appears, as a
    // client with a DNS cache does; what it read (or the error) goes to /root/got.
    const client = `const fs = require("fs"), net = require("net");
      require("dns").lookup("host.capsule.internal", (e, addr) => {
        fs.writeFileSync("/root/addr", e ? "ERR " + e.code : addr);
        setInterval(() => {
          if (!fs.existsSync("/root/go")) return;
          fs.unlinkSync("/root/go");
          const s = net.connect(${open.port}, addr);
          s.on("data", (d) => fs.appendFileSync("/root/got", d));
          s.on("error", (err) => fs.appendFileSync("/root/got", "ERR " + err.code + "\\n"));
        }, 50);
      });`;
    await engine.guest.writeFile(src.id, "/root/client.js", client);
    await engine.guest.exec(src.id, { command: `nohup ${NODE} /root/client.js >/root/client.log 2>&1 &` });
    const got = async (vm: VmInfo): Promise<string> => {
      await engine.guest.exec(vm.id, { command: "rm -f /root/got && touch /root/go" });
      const deadline = Date.now() + 20_000;
      for (;;) {
        const text = (await engine.guest.readFile(vm.id, "/root/got").catch(() => Buffer.alloc(0))).toString("utf8");
        if (text.endsWith("\n")) return text;
        if (Date.now() > deadline) throw new Error(`no answer in ${vm.id}: ${JSON.stringify(text)} ${(await engine.guest.exec(vm.id, { command: "cat /root/client.log" })).stdout}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    assert.equal(await got(src), "host-says-hi\n");
    assert.equal((await engine.guest.readFile(src.id, "/root/addr")).toString(), HOST_ALIAS_IPV4);
    const [copy] = await engine.forkVm(src.id, { count: 1, memory: true });
    assert.ok(copy && copy.gatewayIp !== src.gatewayIp, "the copy has its own gateway");
    assert.deepEqual(copy.firewall, src.firewall);
    assert.equal(await got(copy), "host-says-hi\n", "the copy's client, with the source's lookup, reached the allowed port");
    assert.equal(await reaches(copy, HOST_ALIAS_IPV4, other.port), false, "the copy's policy still closes the other port");
    await engine.deleteVm(copy.id, { wait: true });
    await engine.deleteVm(src.id, { wait: true });
  });

  it("a CIDR rule opens exactly that range, never the host's own address in it", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const net = await scratchNet(7070);
    try {
      const vm = await engine.createVm({ firewall: { rules: [{ to: "cidr", cidr: "10.251.7.0/24", protocol: "tcp", port: 7070 }] } });
      const closed = await engine.createVm({ firewall: { rules: [] } });
      assert.ok(await reaches(vm, net.inside, 7070), "inside the range, on its port");
      assert.equal(await reaches(vm, net.beyond, 7070), false, "the same listener outside the range");
      assert.equal(await reaches(vm, net.hostEnd, open.port), false, "the host's address inside the range");
      assert.equal(await reaches(closed, net.inside, 7070), false, "a VM without the rule");
    } finally {
      await net.close();
    }
  });

  it("a vm rule opens the named VM on its port only, one way", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const target = await engine.createVm({ firewall: { rules: [] } });
    const vm = await engine.createVm({ firewall: { rules: [{ to: "vm", vmId: target.id, protocol: "tcp", port: 7777 }] } });
    const servers = [await listenIn(target, [7777, 7778]), await listenIn(vm, [7777])];
    try {
      assert.ok(await reaches(vm, target.ip!, 7777));
      assert.equal(await reaches(vm, target.ip!, 7778), false, "another port of the same VM");
      assert.equal(await reaches(target, vm.ip!, 7777), false, "the other way round");
      await assert.rejects(engine.createVm({ firewall: { rules: [{ to: "vm", vmId: "nosuchvm0000" }] } }), /does not exist/);
    } finally {
      for (const s of servers) s.kill();
    }
  });

  it("a claim or a later change replaces a running VM's firewall in one step", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    // A warm pool's VM: booted without a policy (the listed ports open), then claimed with one.
    const warm = await engine.createVm({ owner: "pool:test" });
    assert.ok(await reaches(warm, warm.gatewayIp!, other.port));
    const policy: FirewallPolicy = { rules: [{ to: "host", protocol: "tcp", port: open.port, description: "the API" }] };
    const vm = await engine.claimVm(warm.id, { from: "pool:test", owner: "api:test", firewall: policy });
    assert.deepEqual(vm.firewall, policy);
    assert.equal(await reaches(vm, vm.gatewayIp!, other.port), false);
    assert.ok(await reaches(vm, vm.gatewayIp!, open.port));
    assert.doesNotMatch(execFileSync("nft", ["list", "set", "inet", "capsule", "allowed"], { encoding: "utf8" }), new RegExp(hostIf(vm.id)), "its shared-set entries went with the claim");

    await engine.setVmFirewall(vm.id, { rules: [{ to: "host", protocol: "tcp", port: other.port }] });
    assert.equal(await reaches(vm, vm.gatewayIp!, open.port), false);
    assert.ok(await reaches(vm, vm.gatewayIp!, other.port));
    await assert.rejects(engine.setVmFirewall(vm.id, { rules: [{ to: "cidr", cidr: "169.254.169.254/32" }] }), /no VM may reach/);
    assert.ok(await reaches(vm, vm.gatewayIp!, other.port), "a refused change leaves the policy as it was");
    await engine.deleteVm(vm.id, { wait: true });
    assert.doesNotMatch(ruleset(), new RegExp(hostIf(vm.id)));
  });
});

/**
 * Root in a VM against the host's network (trust review of netstack, where the sandbox's own stack
 * writes whole frames onto the veth). Every packet goes to addresses on this machine: listeners
 * inside other test VMs and on the host. Checked from inside the VM, and from the VM's netns
 * (frames with another source, as a sandbox stack that skipped its checks would write them).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import type { VmInfo } from "../src/index.js";
import { useEngine } from "../test-support/harness.js";

const NODE = "/.capsule/lib/ld-linux-x86-64.so.2 --library-path /.capsule/lib /.capsule/bin/node";
const UDP_PORT = 9999;
const hostIf = (id: string) => `cv${id.slice(-12)}`;
const netns = (id: string) => `cap-${id}`;
const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
/** Packets the shared table's named counter has seen (the guard chain's drops). */
const dropped = (counter: "spoofed") => Number(/packets (\d+)/.exec(sh("nft", ["list", "counter", "inet", "capsule", counter]))?.[1] ?? NaN);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Perl (in the image) as root in the VM: every way to a foreign source address that needs no tool
 * the image lacks. Prints one `name: ok|refused <errno>` line per attempt; each datagram's payload
 * names the source it tried, so the receiver can tell them apart.
 */
const spoofScript = (own: string, spoofs: string[], to: string) => `perl -e '
use Socket;
sub say_ { print "$_[0]: ", ($_[1] ? "ok" : "refused $!"), "\\n" }
say_("raw", socket(my $r, AF_INET, SOCK_RAW, IPPROTO_RAW));
say_("raw6", socket(my $r6, AF_INET6, SOCK_RAW, 58));
say_("packet", socket(my $p, 17, SOCK_RAW, 0x0300));
# RTM_NEWADDR of the first foreign address on eth0 (ifindex 2).
socket(my $nl, 16, SOCK_RAW, 0) or die "netlink: $!";
my $a = inet_aton("${spoofs[0]}");
my $body = pack("CCCCi", 2, 32, 0, 0, 2) . pack("SS", 8, 2) . $a . pack("SS", 8, 1) . $a;
send($nl, pack("ISSII", 16 + length($body), 20, 0x605, 1, 0) . $body, 0, pack("SSII", 16, 0, 0, 0));
recv($nl, my $ack, 4096, 0); my $err = (unpack("ISSIIi", $ack))[5];
print "newaddr: ", ($err == 0 ? "ok" : "refused $err"), "\\n";
for my $src ("${own}", ${spoofs.map((s) => `"${s}"`).join(", ")}) {
  socket(my $u, AF_INET, SOCK_DGRAM, 0) or die;
  setsockopt($u, 0, 19, 1); setsockopt($u, 0, 15, 1);  # IP_TRANSPARENT, IP_FREEBIND
  say_("bind $src", bind($u, pack_sockaddr_in(0, inet_aton($src))));
  send($u, "from-$src", 0, pack_sockaddr_in(${UDP_PORT}, inet_aton("${to}"))) for 1 .. 3;
}'`;

describe("hostile VM root on the network", () => {
  /** Connections the host's allowed-port listener accepted, by peer address. */
  const hostPeers: string[] = [];
  let allowed: net.Server;
  let allowedPort = 0;
  before(async () => {
    // Dual-stack, so an IPv6 connection would be seen too.
    allowed = net.createServer((s) => {
      hostPeers.push(s.remoteAddress ?? "?");
      s.end("host-says-hi\n");
    });
    await new Promise<void>((r) => allowed.listen(0, "::", r));
    allowedPort = (allowed.address() as net.AddressInfo).port;
  });
  after(async () => {
    await new Promise<void>((r) => allowed.close(() => r()));
  });
  const t = useEngine(() => ({ allowedHostPorts: [allowedPort] }));

  /**
   * B listens for UDP and prints each datagram's source and payload; A may send it UDP (a `vm`
   * rule) and reach the host's allowed port; C is a third VM whose address A tries to wear.
   */
  async function threeVms(): Promise<{ a: VmInfo; b: VmInfo; c: VmInfo; received: () => string[]; stop: () => void }> {
    const { engine } = t.get();
    const [b, c] = await Promise.all([engine.createVm(), engine.createVm()]);
    const a = await engine.createVm({ firewall: { rules: [{ to: "vm", vmId: b.id, protocol: "udp" }, { to: "host", protocol: "tcp", port: allowedPort }] } });
    const listener = await engine.guest.spawn(b.id, {
      command: `exec ${NODE} -e "const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>console.log(r.address+' '+m));s.bind(${UDP_PORT},()=>console.log('up'))"`,
    });
    let out = "";
    await new Promise<void>((r) => listener.stdout.once("data", () => r()));
    listener.stdout.on("data", (d: Buffer) => (out += d.toString()));
    return { a, b, c, received: () => out.split("\n").filter(Boolean), stop: () => listener.kill() };
  }

  it("root in a VM cannot send from an address that is not its own", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const { a, b, c, received, stop } = await threeVms();
    try {
      const spoofs = [c.ip!, b.gatewayIp!, a.gatewayIp!];
      const r = await engine.guest.exec(a.id, { command: spoofScript(a.ip!, spoofs, b.ip!) });
      assert.equal(r.exitCode, 0, r.stderr);
      // No raw or packet sockets (no CAP_NET_RAW, runsc without --net-raw), no new address (no CAP_NET_ADMIN).
      for (const name of ["raw", "raw6", "packet", "newaddr"]) assert.match(r.stdout, new RegExp(`^${name}: refused`, "m"), r.stdout);
      await sleep(500);
      // B hears A's datagrams, every one from A's own address (a socket whose bind was refused
      // sends from it too), and nothing that claims another source.
      const sources = new Set(received().map((line) => line.split(" ")[0]));
      assert.deepEqual([...sources], [a.ip], r.stdout);
      assert.ok(received().includes(`${a.ip} from-${a.ip}`));
      // A's own TCP to the host still works.
      const own = await engine.guest.exec(a.id, { command: `timeout 3 bash -c 'exec 3<>/dev/tcp/${a.gatewayIp}/${allowedPort} && head -1 <&3'` });
      assert.equal(own.stdout, "host-says-hi\n", own.stderr);
    } finally {
      stop();
    }
  });

  it("frames from a VM's veth with a foreign source are dropped by the host, whatever the sandbox's stack lets out", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { a, b, c, received, stop } = await threeVms();
    const ns = netns(a.id);
    // The VM's netns kernel, on the same eth0 the sandbox writes to: it wears C's address and B's
    // gateway (a host address), and routes to B and to A's gateway through A's veth.
    const spoofs = [c.ip!, b.gatewayIp!];
    const hostPeersBefore = hostPeers.length;
    try {
      for (const s of spoofs) sh("ip", ["-n", ns, "addr", "add", `${s}/32`, "dev", "eth0"]);
      sh("ip", ["-n", ns, "route", "replace", `${b.ip}/32`, "via", a.gatewayIp!, "dev", "eth0", "onlink"]);
      sh("ip", ["-n", ns, "route", "replace", `${a.gatewayIp}/32`, "dev", "eth0"]);
      const before = dropped("spoofed");
      const sender = [
        "const dgram = require('dgram'), net = require('net');",
        `for (const src of ${JSON.stringify(spoofs)}) {`,
        "  const u = dgram.createSocket('udp4');",
        `  u.bind(0, src, () => { for (let i = 0; i < 3; i++) u.send('from-' + src, ${UDP_PORT}, '${b.ip}'); setTimeout(() => u.close(), 200); });`,
        `  const c = net.connect({ host: '${a.gatewayIp}', port: ${allowedPort}, localAddress: src }); c.on('error', () => {}); setTimeout(() => c.destroy(), 1000);`,
        "}",
      ].join("\n");
      sh("ip", ["netns", "exec", ns, process.execPath, "-e", sender]);
      await sleep(300);
      // 3 datagrams and at least one SYN per spoofed source, each dropped before routing.
      assert.ok(dropped("spoofed") - before >= spoofs.length * 4, `spoofed counter rose by ${dropped("spoofed") - before}`);
      assert.deepEqual(received(), []);
      assert.deepEqual(hostPeers.slice(hostPeersBefore), []);
    } finally {
      stop();
      for (const s of spoofs) execFileSync("ip", ["-n", ns, "addr", "del", `${s}/32`, "dev", "eth0"], { stdio: "ignore" });
    }
  });

  it("IPv6 from a VM reaches nothing: no address on either end of its veth, and the host drops it", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const vm = await engine.createVm();
    assert.equal(sh("ip", ["-6", "-o", "addr", "show", "dev", hostIf(vm.id)]), "");
    const inside = await engine.guest.exec(vm.id, { command: "cat /proc/net/if_inet6" });
    assert.doesNotMatch(inside.stdout, /eth0/, inside.stdout);
    // Whatever the VM tries over IPv6 (all-nodes multicast, a guessed link-local host, a global
    // address on the allowed port), nothing answers and the host's listener sees nothing.
    const peersBefore = hostPeers.length;
    const r = await engine.guest.exec(vm.id, {
      command: `${NODE} -e "
        const s = require('dgram').createSocket('udp6');
        for (const to of ['ff02::1%eth0', 'fe80::1%eth0']) s.send('x', ${allowedPort}, to, () => {});
        const c = require('net').connect({ host: '2001:db8::1', port: ${allowedPort} });
        c.on('connect', () => console.log('connected')); c.on('error', (e) => console.log(e.code));
        setTimeout(() => process.exit(0), 1500);"`,
    });
    assert.doesNotMatch(r.stdout, /connected/, r.stdout);
    assert.deepEqual(hostPeers.slice(peersBefore), []);
  });
});

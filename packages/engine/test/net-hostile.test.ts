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
import { MAX_CONNTRACK_ENTRIES_PER_VM, VM_FLOW_LIMITS } from "../src/net/firewall.js";
import { claim, release } from "../src/net/ipam.js";
import { createNetns, deleteNetns } from "../src/net/netns.js";
import { useEngine } from "../test-support/harness.js";

const NODE = "/.capsule/lib/ld-linux-x86-64.so.2 --library-path /.capsule/lib /.capsule/bin/node";
const UDP_PORT = 9999;
const hostIf = (id: string) => `cv${id.slice(-12)}`;
const netns = (id: string) => `cap-${id}`;
const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
/** Packets a named counter of the shared table has seen (what the guard or the flow limits dropped). */
const counted = (counter: "spoofed" | "flows_rate" | "flows_live") => Number(/packets (\d+)/.exec(sh("nft", ["list", "counter", "inet", "capsule", counter]))?.[1] ?? NaN);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** How long the connect storm runs: long enough to spend a VM's burst many times over. */
const STORM_SECONDS = 6;

/** The host's conntrack entries a VM started (its address the original source), optionally to one port. */
function conntrackOf(ip: string, dport?: number): Array<{ state: string; secondsLeft: number }> {
  const entries = [];
  for (const line of sh("cat", ["/proc/net/nf_conntrack"]).split("\n")) {
    // ipv4 2 tcp 6 <seconds left> <STATE> src=… dst=… sport=… dport=… (then the reply's); udp has no state.
    const f = line.split(/\s+/);
    const first = (key: string) => f.find((x) => x.startsWith(`${key}=`))?.slice(key.length + 1);
    if (first("src") !== ip || (dport !== undefined && first("dport") !== String(dport))) continue;
    entries.push({ state: f[2] === "tcp" ? (f[5] ?? "") : "", secondsLeft: Number(f[4]) });
  }
  return entries;
}

/** The host's conntrack entries from or to any of `ips` (a VM's link: its address and its gateway), as the kernel prints them. */
function linkEntries(...ips: string[]): string[] {
  return sh("cat", ["/proc/net/nf_conntrack"])
    .split("\n")
    .filter((line) => ips.some((ip) => line.includes(` src=${ip} `) || line.includes(` dst=${ip} `)));
}

/** Node as root in a VM: one connection to the host's echo port, held open and idle; prints `held` once it answered. */
const heldScript = (gateway: string, echoPort: number) =>
  `${NODE} -e "const c = require('net').connect(${echoPort}, '${gateway}'); c.once('data', () => console.log('held')); c.write('x'); setInterval(() => {}, 1e6)"`;

/** `work`'s result, and the most conntrack entries `ip` had at once while it ran (sampled every 250 ms). */
async function mostEntriesWhile<T>(ip: string, work: Promise<T>): Promise<{ result: T; most: number }> {
  let done = false;
  const settle = () => (done = true);
  work.then(settle, settle);
  let most = 0;
  while (!done) {
    most = Math.max(most, conntrackOf(ip).length);
    await sleep(250);
  }
  return { result: await work, most: Math.max(most, conntrackOf(ip).length) };
}

/**
 * Node as root in a VM: one connection to the echo port held open, then connects to the host's
 * allowed port as fast as 64 at a time can for `secs`, each closed at once; then the held
 * connection is asked once more. Prints `{ connected, failed, held }`.
 */
const stormScript = (gateway: string, port: number, echoPort: number, secs: number) => `
const net = require("net");
const held = net.connect({ host: "${gateway}", port: ${echoPort} });
held.setEncoding("utf8");
const ask = (what) => new Promise((r) => { held.once("data", r); held.write(what); });
held.once("connect", async () => {
  await ask("before");
  let connected = 0, failed = 0, inflight = 0;
  const end = Date.now() + ${secs * 1000};
  await new Promise((done) => {
    const one = () => {
      if (Date.now() > end) return inflight === 0 && done();
      inflight++;
      const c = net.connect({ host: "${gateway}", port: ${port} });
      const t = setTimeout(() => c.destroy(), 3000);
      c.on("connect", () => { connected++; c.resume(); c.end(); });
      c.on("error", () => failed++);
      c.on("close", () => { clearTimeout(t); inflight--; one(); });
    };
    for (let i = 0; i < 64; i++) one();
  });
  console.log(JSON.stringify({ connected, failed, held: await ask("after") }));
  process.exit(0);
});
held.on("error", (e) => { console.log(JSON.stringify({ error: e.message })); process.exit(1); });
`;

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

/**
 * Node as root in a VM: `n` connections to the host's echo port at once, each given 4 s, all held
 * open until the last one settled and 2 s more. Prints `{ connected, failed }` when they settled.
 */
const holdScript = (gateway: string, echoPort: number, n: number) => `
const net = require("net");
let connected = 0, failed = 0;
const settled = () => {
  if (connected + failed < ${n}) return;
  console.log(JSON.stringify({ connected, failed }));
  setTimeout(() => process.exit(0), 2000);
};
for (let i = 0; i < ${n}; i++) {
  const c = net.connect({ host: "${gateway}", port: ${echoPort} });
  const t = setTimeout(() => c.destroy(new Error("timeout")), 4000);
  c.on("connect", () => { clearTimeout(t); connected++; settled(); });
  c.on("error", () => { failed++; settled(); });
}
`;

describe("hostile VM root on the network", () => {
  /** Connections the host's allowed-port listener accepted, by peer address. */
  const hostPeers: string[] = [];
  let allowed: net.Server;
  let allowedPort = 0;
  /** A second allowed host port that echoes, for a connection held open across a storm. */
  let echo: net.Server;
  let echoPort = 0;
  const echoSockets = new Set<net.Socket>();
  before(async () => {
    // Dual-stack, so an IPv6 connection would be seen too.
    allowed = net.createServer((s) => {
      hostPeers.push(s.remoteAddress ?? "?");
      s.on("error", () => {});
      s.end("host-says-hi\n");
    });
    await new Promise<void>((r) => allowed.listen(0, "::", r));
    allowedPort = (allowed.address() as net.AddressInfo).port;
    echo = net.createServer((s) => {
      echoSockets.add(s.on("error", () => {}).on("close", () => echoSockets.delete(s)));
      s.pipe(s);
    });
    await new Promise<void>((r) => echo.listen(0, r));
    echoPort = (echo.address() as net.AddressInfo).port;
  });
  after(async () => {
    await new Promise<void>((r) => allowed.close(() => r()));
    // A stopped VM's connection never closed its host end (the sandbox's stack died with it).
    for (const s of echoSockets) s.destroy();
    await new Promise<void>((r) => echo.close(() => r()));
  });
  const t = useEngine(() => ({ allowedHostPorts: [allowedPort, echoPort] }));

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
      const before = counted("spoofed");
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
      assert.ok(counted("spoofed") - before >= spoofs.length * 4, `spoofed counter rose by ${counted("spoofed") - before}`);
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

  it("a VM connecting as fast as it can holds at most its bounded share of the host's conntrack table; another VM connects meanwhile", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const [a, b] = await Promise.all([engine.createVm(), engine.createVm()]);
    await engine.guest.writeFile(a.id, "/tmp/storm.js", stormScript(a.gatewayIp!, allowedPort, echoPort, STORM_SECONDS));
    const dropsBefore = counted("flows_rate");
    const entriesBefore = conntrackOf(a.ip!).length;
    const started = Date.now();
    const storm = mostEntriesWhile(a.ip!, engine.guest.exec(a.id, { command: `${NODE} /tmp/storm.js` }));
    // B, in the middle of A's storm: every one of its connections to the same host port works.
    await sleep(2000);
    const other = await engine.guest.exec(b.id, {
      command: `for i in $(seq 20); do timeout 5 bash -c 'exec 3<>/dev/tcp/${b.gatewayIp}/${allowedPort} && head -1 <&3' || echo failed; done`,
    });
    const { result: r, most } = await storm;
    const elapsedS = (Date.now() - started) / 1000;
    assert.equal(other.stdout, "host-says-hi\n".repeat(20), other.stderr);
    assert.equal(r.exitCode, 0, r.stdout + r.stderr);
    const result = JSON.parse(r.stdout) as { connected: number; failed: number; held: string };
    // Its connection from before the storm still answers: only new flows are limited.
    assert.equal(result.held, "after", r.stdout);
    // The limit engaged (A tried faster than it may), and A's entries stayed under what its
    // limits allow: every new flow passes the rate limit, so in this run at most the burst plus
    // the rate over the time it ran, and never more than the per-VM bound.
    const drops = counted("flows_rate") - dropsBefore;
    assert.ok(drops > 0, `no new flow of A was dropped (${r.stdout})`);
    const allowedByRate = VM_FLOW_LIMITS.burst + VM_FLOW_LIMITS.newPerSecond * Math.ceil(elapsedS + 1);
    assert.ok(most - entriesBefore <= allowedByRate, `A had ${most} conntrack entries (${entriesBefore} before), more than ${allowedByRate} in ${elapsedS} s`);
    assert.ok(most <= MAX_CONNTRACK_ENTRIES_PER_VM, `A had ${most} conntrack entries, over ${MAX_CONNTRACK_ENTRIES_PER_VM}`);
    assert.ok(result.connected > 0, r.stdout);
    ctx.diagnostic(`storm: ${r.stdout.trim()}; most entries ${most}; rate drops ${drops}; ${elapsedS.toFixed(1)} s`);
  });

  it("a VM holds at most its limit of open flows at a time", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const vm = await engine.createVm();
    // More than the limit, but within the burst, so only the open-flow limit can refuse them.
    const tries = VM_FLOW_LIMITS.live + 50;
    assert.ok(tries <= VM_FLOW_LIMITS.burst + VM_FLOW_LIMITS.newPerSecond);
    await engine.guest.writeFile(vm.id, "/tmp/hold.js", holdScript(vm.gatewayIp!, echoPort, tries));
    const refusedBefore = counted("flows_live");
    const { result: r, most } = await mostEntriesWhile(vm.ip!, engine.guest.exec(vm.id, { command: `${NODE} /tmp/hold.js` }));
    assert.equal(r.exitCode, 0, r.stdout + r.stderr);
    const { connected, failed } = JSON.parse(r.stdout) as { connected: number; failed: number };
    assert.equal(connected + failed, tries, r.stdout);
    assert.ok(connected <= VM_FLOW_LIMITS.live && failed >= tries - VM_FLOW_LIMITS.live, r.stdout);
    assert.ok(counted("flows_live") > refusedBefore, "the open-flow limit refused nothing");
    assert.ok(most <= VM_FLOW_LIMITS.live, `${most} conntrack entries while it held ${connected} connections`);
    ctx.diagnostic(`held: ${r.stdout.trim()}; most entries ${most}`);
  });

  it("a VM's closed connection leaves the host's conntrack table within the short timeout, not the kernel's 120 s", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const vm = await engine.createVm();
    const r = await engine.guest.exec(vm.id, { command: `timeout 3 bash -c 'exec 3<>/dev/tcp/${vm.gatewayIp}/${allowedPort} && head -1 <&3'` });
    assert.equal(r.stdout, "host-says-hi\n", r.stderr);
    await sleep(200);
    const entries = conntrackOf(vm.ip!, allowedPort);
    assert.equal(entries.length, 1, JSON.stringify(entries));
    assert.equal(entries[0]?.state, "TIME_WAIT");
    assert.ok(entries[0]!.secondsLeft <= VM_FLOW_LIMITS.shortSeconds, JSON.stringify(entries));
    await sleep((VM_FLOW_LIMITS.shortSeconds + 1) * 1000);
    assert.deepEqual(conntrackOf(vm.ip!, allowedPort), []);
  });

  /** Holds an idle connection from `vm` to the host's echo port; resolves once its entry is ESTABLISHED. */
  async function holdConnection(vm: VmInfo): Promise<string[]> {
    const { engine } = t.get();
    const holder = await engine.guest.spawn(vm.id, { command: heldScript(vm.gatewayIp!, echoPort) });
    holder.exited.catch(() => undefined); // it ends with the VM
    await new Promise<void>((r) => holder.stdout.once("data", () => r()));
    const entries = linkEntries(vm.ip!).filter((l) => l.includes(`dport=${echoPort} `) && l.includes(" ESTABLISHED "));
    assert.equal(entries.length, 1, linkEntries(vm.ip!).join("\n"));
    return entries;
  }

  it("a stopped or deleted VM's connections leave the host's conntrack table, established ones included", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const vm = await engine.createVm();
    const [entry] = await holdConnection(vm);
    // An idle established flow of a VM is kept for hours, not the kernel's 5 days.
    const secondsLeft = Number(entry!.split(/\s+/)[4]);
    assert.ok(secondsLeft > VM_FLOW_LIMITS.shortSeconds && secondsLeft <= VM_FLOW_LIMITS.establishedSeconds, entry);
    await engine.stopVm(vm.id);
    assert.deepEqual(linkEntries(vm.ip!, vm.gatewayIp!), []);
    // Started again (on whichever /30 it gets) and deleted with a connection open: gone too.
    const again = await engine.startVm(vm.id);
    await holdConnection(again);
    await engine.deleteVm(vm.id, { wait: true });
    assert.deepEqual(linkEntries(again.ip!, again.gatewayIp!), []);
  });

  it("a VM's /30 carries no conntrack entry of an earlier VM on it once its network is set up", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    // A /30 claimed as a VM's would be, with entries planted as an earlier VM's that escaped its
    // teardown: one it opened to its gateway and one another address opened to it.
    const lease = await claim("10.213.0.0/16", { dataDir: t.get().dataDir, vmId: "conntrack-probe" });
    const ns = `cap-ctprobe-${process.pid}`;
    const hostIf = `cvct${process.pid}`;
    const plant = (src: string, dst: string) =>
      sh("conntrack", ["-I", "-p", "tcp", "-s", src, "-d", dst, "--sport", "40000", "--dport", String(echoPort), "--state", "ESTABLISHED", "-u", "ASSURED", "-t", "3600"]);
    try {
      plant(lease.guestIp, lease.hostIp);
      plant("192.0.2.7", lease.guestIp);
      assert.equal(linkEntries(lease.guestIp).length, 2, "planting failed");
      await createNetns(ns, hostIf, lease, false);
      assert.deepEqual(linkEntries(lease.guestIp, lease.hostIp), []);
    } finally {
      await deleteNetns(ns, hostIf);
      await release(lease.slot, "conntrack-probe");
    }
  });
});

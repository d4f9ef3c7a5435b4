/**
 * Per-VM firewall rules through the official `freestyle@0.2.17` client, checked from inside the
 * VMs: a VM whose firewall allows nothing reaches nothing, one allowed to a host port reaches only
 * that port, a rule to another of the account's VMs opens that VM's port only; `vm.firewallRules()`
 * answers the rules as sent; a deleted VM leaves nothing in the host's ruleset. Every target is a
 * listener on this machine (the host, or a test VM).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { FreestyleApiError, type FirewallEndpoint, type FirewallSpec, type Vm } from "freestyle";
import { useServer } from "@capsule/server/test-support";
import { client } from "../test-support/v5.js";

const NODE = "/.capsule/lib/ld-linux-x86-64.so.2 --library-path /.capsule/lib /.capsule/bin/node";
const probe = (host: string, port: number) => `timeout 3 bash -c 'exec 3<>/dev/tcp/${host}/${port} && head -1 <&3'`;
const reaches = async (vm: Vm, host: string, port: number) => {
  const r = await vm.exec(probe(host, port));
  return r.statusCode === 0 && (r.stdout ?? "").endsWith("-says-hi\n");
};
const outbound = (destination: FirewallEndpoint) => ({ action: "allow" as const, source: {}, destination });
const ruleset = () => execFileSync("nft", ["list", "ruleset"], { encoding: "utf8" });

async function hostListener(): Promise<{ port: number; close: () => Promise<void> }> {
  const server = net.createServer((s) => s.end("host-says-hi\n"));
  await new Promise<void>((r) => server.listen(0, "0.0.0.0", r));
  const port = (server.address() as net.AddressInfo).port;
  return { port, close: () => new Promise((r) => server.close(() => r())) };
}

describe("official client 0.2.17: per-VM firewall rules", () => {
  let open: Awaited<ReturnType<typeof hostListener>>;
  let other: Awaited<ReturnType<typeof hostListener>>;
  before(async () => {
    [open, other] = await Promise.all([hostListener(), hostListener()]);
  });
  after(async () => {
    await Promise.all([open.close(), other.close()]);
  });
  // Both ports listed: only the VM's own rules keep it from either.
  const t = useServer({ allowedHostPorts: () => [open.port, other.port] });

  it("nothing allowed reaches nothing; a host port rule reaches that port only; a VM rule that VM's port only", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, keyB, server } = t.get();
    const fs = client(url, keyA);
    const made: string[] = [];
    try {
      const closed = await fs.vms.create({ firewall: { rules: [] } });
      made.push(closed.vmId);
      const hostRule = outbound({ vmId: "host", port: open.port, protocol: "tcp" });
      const toHost = await fs.vms.create({ firewall: { rules: [{ ...hostRule, description: "the API" }] } });
      made.push(toHost.vmId);
      const peerRule = outbound({ vmId: closed.vmId, port: 7777, protocol: "tcp" });
      const toPeer = await fs.vms.create({ firewall: { rules: [peerRule] } });
      made.push(toPeer.vmId);

      const listening = await closed.vm.exec(`(${NODE} -e "for (const p of [7777, 7778]) require('net').createServer(s=>s.end('vm-says-hi\\n')).listen(p)" >/dev/null 2>&1 &) ; sleep 1`);
      assert.equal(listening.statusCode, 0);
      const peerIp = (await server.engine.getVm(closed.vmId)).ip!;

      for (const port of [open.port, other.port]) assert.equal(await reaches(closed.vm, "host.capsule.internal", port), false, `closed VM reached host port ${port}`);
      assert.equal(await reaches(toHost.vm, "host.capsule.internal", open.port), true, "the allowed host port");
      assert.equal(await reaches(toHost.vm, "host.capsule.internal", other.port), false, "another listed host port");
      assert.equal(await reaches(toHost.vm, peerIp, 7777), false, "a VM no rule names");
      assert.equal(await reaches(toPeer.vm, peerIp, 7777), true, "the named VM's port");
      assert.equal(await reaches(toPeer.vm, peerIp, 7778), false, "another port of the named VM");
      assert.equal(await reaches(toPeer.vm, "host.capsule.internal", open.port), false, "the host, which no rule names");

      // The rules come back as sent, from the create and from vm.firewallRules().
      assert.deepEqual(closed.firewallRules, []);
      assert.deepEqual(toHost.firewallRules.map((r) => [r.destination, r.description]), [[hostRule.destination, "the API"]]);
      const listed = await toPeer.vm.firewallRules();
      assert.equal(listed.totalCount, 1);
      assert.deepEqual(listed.rules[0]?.destination, peerRule.destination);
      assert.deepEqual((await fs.firewall.rules.list()).rules.map((r) => r.destination).length, 2);
      assert.deepEqual((await fs.firewall.rules.list({ vpcId: "vpc-1" })).rules, []);

      // Another account can neither name these VMs in its rules nor read their rules.
      const b = client(url, keyB);
      const named = await b.vms.create({ firewall: { rules: [peerRule] } }).then(
        () => assert.fail("another account's VM was accepted as a rule target"),
        (e: unknown) => e as FreestyleApiError,
      );
      assert.equal(named.status, 400);
      await assert.rejects(b.firewall.rules.list({ vmId: closed.vmId }), (e: unknown) => e instanceof FreestyleApiError && e.status === 404);

      // What the server cannot open is refused with a code, not narrowed or widened.
      const refusals: Array<[FirewallSpec, number]> = [
        [{ rules: [outbound({ public: true })] }, 400], // this server runs with --egress none
        [{ rules: [outbound({ vmId: "host", port: 22, protocol: "tcp" })] }, 400], // not a listed port
        [{ rules: [{ action: "allow", source: { public: true }, destination: { port: 80, protocol: "tcp" } }] }, 501], // inbound
      ];
      for (const [firewall, status] of refusals) {
        await assert.rejects(fs.vms.create({ firewall }), (e: unknown) => e instanceof FreestyleApiError && e.status === status, JSON.stringify(firewall));
      }
    } finally {
      for (const id of made) await fs.vms.delete(id);
    }
    await server.engine.settled();
    const left = ruleset();
    for (const id of made) assert.doesNotMatch(left, new RegExp(`cv${id.slice(-12)}`), `nft state of deleted VM ${id}`);
  });
});

/**
 * Packages without VM internet: in a VM with egress none, `apt-get install nodejs` and
 * `npm install` work through the host's package caches (scripts/package-caches.sh), and the VM
 * still reaches nothing else: not the internet (directly or through a cache), not another host
 * port, not the caches' own listeners, not another VM.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { answeringCaches } from "../src/caches/guest-config.js";
import type { NpmCacheStats } from "../src/caches/npm-cache.js";
import { guestCacheUrl, PACKAGE_CACHE_PORTS } from "../src/caches/ports.js";
import { hostTcpServer, useEngine } from "../test-support/harness.js";

const NODE = "/.capsule/lib/ld-linux-x86-64.so.2 --library-path /.capsule/lib /.capsule/bin/node";
/** bash's /dev/tcp: exit 0 and the server's first line if it connects, non-zero otherwise. */
const probe = (host: string, port: number) => `timeout 3 bash -c 'exec 3<>/dev/tcp/${host}/${port} && head -1 <&3'`;
/** The status line a cache answers to one raw HTTP request. */
const ask = (port: number, request: string) => `timeout 10 bash -c 'exec 3<>/dev/tcp/host.capsule.internal/${port} && printf "${request}\\r\\n\\r\\n" >&3 && head -1 <&3'`;
/** apt and npm on a 2-core host shared with other runs: generous, a hang still fails. */
const INSTALL_MS = 600_000;
/** The npm CLI the test installs from the npm cache (Node 20's npm line). */
const NPM_CLI = "10.9.2";
/** apt-cacher-ng's transfer log, where scripts/package-caches.sh puts it. */
const APT_LOG = `${process.env.CAPSULE_PACKAGE_CACHE_DIR ?? "/var/cache/capsule"}/apt/log/apt-cacher.log`;
const npmStats = async (): Promise<NpmCacheStats> => (await fetch(`http://127.0.0.1:${PACKAGE_CACHE_PORTS.npm.listen}/-/capsule/stats`)).json() as Promise<NpmCacheStats>;

describe("package caches", () => {
  let gap: string | undefined;
  let other: Awaited<ReturnType<typeof hostTcpServer>>;
  before(async () => {
    const up = await answeringCaches();
    if (up.length < 2) gap = `the host's package caches are not running (answering: ${up.join(", ") || "none"}): run scripts/setup.sh`;
    if (gap && process.env.CI) throw new Error(`CI must run this suite, but ${gap}`);
    other = await hostTcpServer("0.0.0.0");
  });
  after(() => other.close());
  const t = useEngine({ egress: "none" });

  it("apt-get install and npm install work in VMs without internet, and a second VM's come from the caches", { timeout: 4 * INSTALL_MS }, async (ctx) => {
    if (t.skip() || gap) return ctx.skip(String(t.skip() || gap));
    const { engine } = t.get();
    const install = async (label: string) => {
      const vm = await engine.createVm();
      const conf = await engine.guest.exec(vm.id, { command: "cat /etc/apt/apt.conf.d/00capsule-package-cache /etc/npmrc" });
      assert.match(conf.stdout, /Acquire::http::Proxy "http:\/\/host\.capsule\.internal:3142\/";/);
      assert.match(conf.stdout, /^registry=http:\/\/host\.capsule\.internal:4873\/$/m);
      const timed = async (what: string, command: string) => {
        const t0 = performance.now();
        const r = await engine.guest.exec(vm.id, { command, timeoutMs: INSTALL_MS });
        assert.equal(r.exitCode, 0, `${what}: ${r.stderr.slice(-2000)}`);
        ctx.diagnostic(`${label}: ${what} ${Math.round(performance.now() - t0)} ms`);
        return r.stdout;
      };
      await timed("apt-get update + install nodejs", "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs");
      // Debian's npm is ~380 packages (3 min here, see README); the npm CLI itself comes from the
      // npm cache instead, reading the same /etc/npmrc that Debian's npm reads.
      await timed("npm CLI from the npm cache", `curl -sSf ${guestCacheUrl("npm")}/npm/-/npm-${NPM_CLI}.tgz | tar xz -C /opt`);
      const out = await timed(
        "npm install is-number",
        "mkdir -p /tmp/p && cd /tmp/p && node /opt/package/bin/npm-cli.js --globalconfig /etc/npmrc install --no-package-lock is-number@7.0.0 && node -e \"console.log(require('is-number')(42), require('is-number/package.json').version)\"",
      );
      assert.match(out, /^true 7\.0\.0$/m);
      return vm;
    };
    await install("first VM");
    const before = await npmStats();
    const second = await install("second VM");
    // The second VM's packages were all served from the caches: apt-cacher-ng fetched no .deb for
    // it (its log: time|I|bytes|client|path for a download, O for what it served), and the npm
    // cache fetched no tarball.
    const log = (await fs.readFile(APT_LOG, "utf8")).split("\n").map((l) => l.split("|"));
    const mine = log.filter((f) => f[3] === second.ip && f[4]?.endsWith(".deb"));
    assert.ok(mine.some((f) => f[1] === "O"), `no .deb served to ${second.ip} in ${APT_LOG}`);
    assert.deepEqual(mine.filter((f) => f[1] === "I").map((f) => f[4]), [], "fetched upstream again");
    const after = await npmStats();
    assert.equal(after.tarballMisses, before.tarballMisses);
    assert.ok(after.tarballHits >= before.tarballHits + 2, JSON.stringify(after));
  });

  it("the VM reaches nothing else, through the caches or around them", async (ctx) => {
    if (t.skip() || gap) return ctx.skip(String(t.skip() || gap));
    const { engine } = t.get();
    const a = await engine.createVm();
    const b = await engine.createVm();
    const server = await engine.guest.spawn(b.id, {
      command: `exec ${NODE} -e "require('net').createServer(s=>s.end('b-says-hi\\n')).listen(7777,()=>console.log('up'))"`,
    });
    await new Promise<void>((r) => server.stdout.once("data", () => r()));
    const gw = a.gatewayIp!;
    const unreachable: Array<[string, number]> = [
      ["1.1.1.1", 80], // the internet
      ["151.101.2.132", 80], // deb.debian.org's CDN, directly
      [gw, other.port], // another host port
      [gw, PACKAGE_CACHE_PORTS.apt.listen], // the caches' listeners themselves, at the gateway
      [gw, PACKAGE_CACHE_PORTS.npm.listen],
      [b.gatewayIp!, PACKAGE_CACHE_PORTS.npm.guest], // the cache port at another VM's gateway
      [b.ip!, 7777], // another VM
    ];
    for (const [host, port] of unreachable) {
      const r = await engine.guest.exec(a.id, { command: probe(host, port) });
      assert.notEqual(r.exitCode, 0, `VM reached ${host}:${port}`);
    }
    server.kill();

    // The apt cache proxies only Debian's archives: no other host, no CONNECT tunnel.
    for (const request of ["GET http://example.com/ HTTP/1.1\\r\\nHost: example.com", "CONNECT deb.debian.org:443 HTTP/1.1\\r\\nHost: deb.debian.org:443"]) {
      const r = await engine.guest.exec(a.id, { command: ask(PACKAGE_CACHE_PORTS.apt.guest, request) });
      assert.doesNotMatch(r.stdout, /^HTTP\/1\.[01] 200/, `${request}: ${r.stdout}`);
      assert.match(r.stdout, /^HTTP\/1\.[01] [45]\d\d/, `${request}: ${r.stdout} ${r.stderr}`);
    }
    // The npm cache serves only package metadata and tarballs, GET and HEAD only.
    for (const [request, status] of [
      ["GET /../../etc/passwd HTTP/1.1\\r\\nHost: x", 404],
      ["GET http://example.com/ HTTP/1.1\\r\\nHost: example.com", 404],
      ["POST /is-number HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 0", 405],
      ["GET /-/capsule/stats HTTP/1.1\\r\\nHost: x", 404],
    ] as const) {
      const r = await engine.guest.exec(a.id, { command: ask(PACKAGE_CACHE_PORTS.npm.guest, request) });
      assert.match(r.stdout, new RegExp(`^HTTP/1\\.1 ${status} `), `${request}: ${r.stdout} ${r.stderr}`);
    }
  });

  it("a VM whose firewall policy allows nothing still has the caches, and nothing else", async (ctx) => {
    if (t.skip() || gap) return ctx.skip(String(t.skip() || gap));
    const { engine } = t.get();
    const vm = await engine.createVm({ firewall: { rules: [] } });
    const ok = await engine.guest.exec(vm.id, { command: ask(PACKAGE_CACHE_PORTS.npm.guest, "HEAD /is-number HTTP/1.1\\r\\nHost: x") });
    assert.match(ok.stdout, /^HTTP\/1\.1 200 /, ok.stderr);
    const no = await engine.guest.exec(vm.id, { command: probe(vm.gatewayIp!, other.port) });
    assert.notEqual(no.exitCode, 0);
  });
});

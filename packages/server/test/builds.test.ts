/**
 * Declarative snapshots through the official freestyle@0.1.63 client on real sandboxes, with the
 * server's egress `none` (apt reaches only the host's package cache): a VmSpec builds once (two
 * concurrent ensures share the build, a later one is cached, a create with the spec boots from
 * it), the VM has the package, files, command output and running service, and the builds API
 * shows the build; a running phase's log is readable while it runs (a runCommands line before the
 * build ends); a oneshot that needs the internet fails the build with its service and log;
 * a baseImage Dockerfile builds, and what it cannot build is a 501 naming the instruction.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as freestyleModule from "freestyle";
import type { Freestyle } from "freestyle";
import Database from "better-sqlite3";
import { Engine } from "@capsule/engine";
import { dbPath } from "../src/index.js";
import { asUser, client, type Vm } from "../test-support/client.js";
import { AGENT_BUNDLE, IMAGES_DIR, call, createKey, destroyDataDir, hostGap, scratchDir, spawnServer, useServer } from "../test-support/harness.js";

const PORT = 8000;
/** A tiny HTTP server from the base image's perl. */
const WEB = `perl -MIO::Socket::INET -e '$|=1; my $s = IO::Socket::INET->new(LocalPort => ${PORT}, Listen => 5, ReuseAddr => 1) or die "listen: $!"; while (my $c = $s->accept) { <$c>; print $c "HTTP/1.0 200 OK\\r\\n\\r\\nbuilt service\\n"; close $c }'`;

/** The client's VmSpec builder and snapshots.ensure (its shipped .d.mts leaves them out). */
interface VmSpecBuilder {
  aptDeps(...deps: string[]): VmSpecBuilder;
  additionalFiles(files: Record<string, { content: string; encoding?: "utf-8" | "base64"; executable?: boolean }>): VmSpecBuilder;
  runCommands(...commands: string[]): VmSpecBuilder;
  systemdService(service: { name: string; mode?: "service" | "oneshot"; exec: string[]; enable?: boolean }): VmSpecBuilder;
  workdir(path: string): VmSpecBuilder;
}
const VmSpec = (freestyleModule as unknown as { VmSpec: new () => VmSpecBuilder }).VmSpec;
type Ensured = { snapshotId: string; buildId: string; cached: boolean };
function ensure(fs: Freestyle, spec: VmSpecBuilder): Promise<Ensured> {
  return (fs.vms.snapshots as unknown as { ensure(o: { spec: VmSpecBuilder }): Promise<Ensured> }).ensure({ spec });
}

interface BuildHandle {
  get(): Promise<{ state: string; templateHash: string; plannedPhases: string[]; failureReason: string | null }>;
  wait(o?: { intervalMs?: number }): Promise<{ state: string }>;
  phases(): Promise<Array<{ name: string; state: string; log: string }>>;
}
type BuiltVm = Vm & { getBuild(): Promise<BuildHandle> };

async function eventually(check: () => Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe("declarative snapshots", () => {
  const t = useServer();

  it("a VmSpec builds once (concurrent ensures share it, later ones are cached) and a VM from it has everything", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { server, url, keyA } = t.get();
    const fs = client(url, keyA);
    const alice = server.keys.ensureAccount("alice");
    const spec = () =>
      new VmSpec()
        .aptDeps("jq")
        .additionalFiles({
          "/opt/app/config.json": { content: '{"greeting":"hello"}' },
          "/opt/app/run.sh": { content: Buffer.from("#!/bin/sh\necho ran-script\n").toString("base64"), encoding: "base64", executable: true },
        })
        .runCommands("jq -r .greeting /opt/app/config.json > /opt/app/greeting.txt")
        .systemdService({ name: "web", mode: "service", exec: [WEB], enable: true })
        .workdir("/opt/app");
    const buildsBefore = server.svc.builds.buildRows.count(alice.id);
    const [a, b] = await Promise.all([ensure(fs, spec()), ensure(fs, spec())]);
    assert.equal(a.snapshotId, b.snapshotId, "two concurrent ensures answer one snapshot");
    assert.equal(server.svc.builds.buildRows.count(alice.id), buildsBefore + 1, "and ran one build");
    const again = await ensure(fs, spec());
    assert.deepEqual([again.snapshotId, again.cached], [a.snapshotId, true]);
    assert.equal(server.svc.builds.buildRows.count(alice.id), buildsBefore + 1, "a later ensure builds nothing");
    assert.equal((await server.engine.listVms()).length, 0, "no builder VM is left");
    const snap = (await call(url, keyA, "GET", `/v1/vms/snapshots/${a.snapshotId}`)).body;
    assert.deepEqual([snap.buildId, typeof snap.templateHash], [a.buildId, "string"], "the snapshot names its build (Snapshot.getBuild)");

    const created = await fs.vms.create({ spec: spec(), idleTimeoutSeconds: null } as never);
    const vm = created.vm as BuiltVm;
    try {
      assert.equal(server.svc.builds.buildRows.count(alice.id), buildsBefore + 1, "the create reused the snapshot");
      assert.equal((await vm.exec("jq -n '{a: 1}' | jq -c .")).stdout, '{"a":1}\n', "the apt package works");
      assert.equal((await vm.exec("cat /opt/app/greeting.txt")).stdout, "hello\n", "the command's output");
      assert.equal((await vm.exec("/opt/app/run.sh && stat -c %a /opt/app/run.sh")).stdout, "ran-script\n755\n", "the executable file");
      assert.equal((await vm.exec("pwd")).stdout, "/opt/app\n", "the spec's workdir is exec's default working directory");
      assert.equal((await asUser(vm, "nobody").exec("pwd")).stdout, "/opt/app\n", "for every user");
      await eventually(async () => (await vm.exec(`curl -s -m 2 http://127.0.0.1:${PORT}/`)).stdout === "built service\n", "the service to answer");

      const build = await vm.getBuild();
      assert.equal((await build.wait({ intervalMs: 100 })).state, "succeeded");
      const info = await build.get();
      assert.deepEqual(info.plannedPhases, ["boot", "files", "aptDeps", "systemd", "workdir", "snapshot"]);
      const phases = await build.phases();
      assert.deepEqual(phases.map((p) => [p.name, p.state]), info.plannedPhases.map((n) => [n, "succeeded"]));
      assert.match(phases.find((p) => p.name === "aptDeps")!.log, /jq/);
    } finally {
      await vm.delete();
    }
    // spec.snapshot() puts the same layer under an empty one: the same snapshot, still no build.
    // The create's answer carries the snapshot it booted from; the client's type leaves it out.
    const layered = (await fs.vms.create({ spec: (spec() as VmSpecBuilder & { snapshot(): VmSpecBuilder }).snapshot(), idleTimeoutSeconds: null } as never)) as { vm: Vm; snapshotId?: string };
    try {
      assert.equal(layered.snapshotId, a.snapshotId);
      assert.equal(server.svc.builds.buildRows.count(alice.id), buildsBefore + 1);
    } finally {
      await layered.vm.delete();
    }
  });

  it("a oneshot that needs the internet fails the build with the service's name and log; nothing is left", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { server, url, keyA } = t.get();
    const fs = client(url, keyA);
    const snapshotsBefore = (await server.engine.listSnapshots()).length;
    const spec = new VmSpec().runCommands("curl -sS -m 5 https://example.com");
    const err = await ensure(fs, spec).then(
      () => assert.fail("the build succeeded"),
      (e: Error & { body: { code: string; buildId: string; diagnostics: { serviceStates: unknown[]; failedServiceLogs: Array<{ unitName: string; log: string }> } } }) => e,
    );
    assert.equal(err.body.code, "VM_SETUP_FAILED");
    assert.equal(err.name, "VmSetupFailedError");
    assert.match(err.message, /freestyle-run-command-1\.service/);
    const logs = err.body.diagnostics.failedServiceLogs;
    assert.equal(logs[0]?.unitName, "freestyle-run-command-1.service");
    assert.match(logs[0]!.log, /curl/i, "the service's log shows curl's error");
    assert.match(err.message, /Failed service logs/, "the client rendered the diagnostics");
    const failed = server.svc.builds.buildRows.owned(server.keys.ensureAccount("alice"), err.body.buildId);
    assert.equal(failed.state, "failed");
    assert.match(failed.failureReason ?? "", /systemd/);
    assert.equal((await server.engine.listVms()).length, 0, "the builder VM is gone");
    assert.equal((await server.engine.listSnapshots()).length, snapshotsBefore, "no snapshot was made");
  });

  it("a running phase's log is readable while it runs: a runCommands line shows before the build ends", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const fs = client(url, keyA);
    const started = Date.now();
    const building = ensure(fs, new VmSpec().runCommands(`echo live-first-${started}; sleep 8; echo live-second-${started}`));
    let seenAt: number | undefined;
    try {
      await eventually(
        async () => {
          const running = (await call(url, keyA, "GET", "/v1/vms/builds?state=running")).body.builds as Array<{ buildId: string }>;
          for (const b of running) {
            const phases = (await call(url, keyA, "GET", `/v1/vms/builds/${b.buildId}/phases`)).body.phases as Array<{ name: string; state: string; log: string }>;
            const systemd = phases.find((p) => p.name === "systemd");
            if (!systemd?.log.includes(`live-first-${started}`)) continue;
            assert.equal(systemd.state, "running");
            assert.ok(!systemd.log.includes(`live-second-${started}`), "read before the second line was printed");
            assert.equal((await call(url, keyA, "GET", `/v1/vms/builds/${b.buildId}`)).body.state, "running", "while the build runs");
            seenAt = Date.now();
            return true;
          }
          return false;
        },
        "the first line in the running phase's log",
        60_000,
      );
    } finally {
      const done = await building;
      ctx.diagnostic(`first line seen ${seenAt! - started} ms after the ensure was sent; the build took ${Date.now() - started} ms`);
      const phases = (await call(url, keyA, "GET", `/v1/vms/builds/${done.buildId}/phases`)).body.phases as Array<{ name: string; log: string }>;
      // What was last read of it: a runCommands oneshot removes itself (and its log) when it succeeds,
      // so a line printed after the last poll is not kept (docs/builds.md).
      assert.match(phases.find((p) => p.name === "systemd")!.log, new RegExp(`live-first-${started}`), "the ended phase keeps the command's output");
    }
  });

  it("a baseImage Dockerfile (FROM debian:trixie-slim, ENV, RUN, WORKDIR, USER) builds and its ENV and WORKDIR hold in the VM; the rest is a 501", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const dockerfileContent = [
      "FROM debian:trixie-slim",
      'ENV GREETING="hello docker" \\',
      "    PATH=/opt/tools:$PATH",
      `RUN mkdir -p /opt/tools && printf '#!/bin/sh\\necho "tool: $GREETING"\\n' > /opt/tools/tool && chmod +x /opt/tools/tool`,
      'RUN ["useradd", "-m", "app"]',
      "WORKDIR /srv/app",
      "RUN chown app .",
      "USER app",
      "RUN id -un > whoami && tool > said",
    ].join("\n");
    const ensured = await call(url, keyA, "POST", "/v1/vms/snapshots", { template: { baseImage: { dockerfileContent } } });
    assert.equal(ensured.status, 200, JSON.stringify(ensured.body));
    const created = await call(url, keyA, "POST", "/v1/vms", { snapshotId: ensured.body.snapshotId, idleTimeoutSeconds: null });
    const vm = created.body.id as string;
    try {
      const exec = async (command: string) => (await call(url, keyA, "POST", `/v1/vms/${vm}/exec-await`, { command })).body.stdout as string;
      assert.equal(await exec("pwd && cat whoami said && stat -c %U said"), "/srv/app\napp\ntool: hello docker\napp\n", "WORKDIR is exec's cwd; the RUN after USER ran as app with ENV and PATH");
      assert.equal(await exec("tool && id -un"), "tool: hello docker\nroot\n", "ENV (and PATH) hold for exec; USER applied only to the RUNs");
    } finally {
      await call(url, keyA, "DELETE", `/v1/vms/${vm}`);
    }
    for (const [content, message] of [
      ["FROM debian:trixie\nRUN true\nCOPY . /app", /COPY on line 3 is not supported/],
      ["FROM ubuntu:24.04", /FROM ubuntu:24\.04 on line 1/],
      ["FROM debian:bookworm", /needs a bookworm base image, which this host does not have/],
    ] as const) {
      const refused = await call(url, keyA, "POST", "/v1/vms/snapshots", { template: { baseImage: { dockerfileContent: content } } });
      assert.deepEqual([refused.status, refused.body.code], [501, "BAD_REQUEST"], content);
      assert.match(refused.body.message ?? "", message);
    }
  });
});

describe("a server killed mid-build", () => {
  it("leaves no builder VM, layer, snapshot or unfinished build after its restart", async (ctx) => {
    const gap = await hostGap();
    if (gap) {
      if (process.env.CI) throw new Error(gap);
      return ctx.skip(gap);
    }
    const dataDir = await scratchDir();
    let server: Awaited<ReturnType<typeof spawnServer>> | undefined;
    try {
      const key = createKey(dataDir, "alice");
      server = await spawnServer(dataDir);
      // A oneshot that outlives the server: the build is in its systemd phase when the kill comes.
      const template = { systemd: { services: [{ name: "slow", mode: "oneshot", exec: ["sleep 600"] }] } };
      const pending = call(server.url, key, "POST", "/v1/vms/snapshots", { template }).catch(() => undefined);
      const db = new Database(dbPath(dataDir), { readonly: true });
      let buildId: string | undefined;
      try {
        const deadline = Date.now() + 60_000;
        while (!buildId) {
          if (Date.now() > deadline) assert.fail("the build never reached its systemd phase");
          buildId = (db.prepare("SELECT build_id FROM build_phases WHERE name = 'systemd' AND state = 'running'").get() as { build_id: string } | undefined)?.build_id;
          if (!buildId) await new Promise((r) => setTimeout(r, 100));
        }
      } finally {
        db.close();
      }
      const killed = new Promise((r) => server!.child.once("exit", r));
      server.child.kill("SIGKILL");
      await killed;
      await pending;

      server = await spawnServer(dataDir);
      const build = (await call(server.url, key, "GET", `/v1/vms/builds/${buildId}`)).body;
      assert.deepEqual([build.state, build.failureReason], ["failed", "the server stopped during the build"]);
      const phases = (await call(server.url, key, "GET", `/v1/vms/builds/${buildId}/phases`)).body.phases as Array<{ name: string; state: string }>;
      assert.equal(phases.find((p) => p.name === "systemd")?.state, "failed");
      assert.deepEqual((await call(server.url, key, "GET", "/v1/vms/snapshots")).body.snapshots, []);
      const stopped = new Promise((r) => server!.child.once("exit", r));
      server.child.kill("SIGTERM");
      await stopped;
      server = undefined;
      const engine = await Engine.open({ dataDir, imagesDir: IMAGES_DIR, agentBundleDir: AGENT_BUNDLE });
      try {
        assert.deepEqual(await engine.listVms(), [], "the builder VM was deleted");
        assert.deepEqual(await engine.listSnapshots(), []);
        assert.deepEqual(await engine.layerIds(), [], "no layer is left");
      } finally {
        await engine.close();
      }
    } finally {
      server?.child.kill("SIGKILL");
      await destroyDataDir(dataDir);
    }
  });
});

/**
 * The `git` layer on real sandboxes, with repositories served from this machine only (scratch
 * bare repos behind `git http-backend` on 127.0.0.1) and the server's egress `none`: the client's
 * `VmSpec.repo(url, path)` builds a snapshot whose VM has a clone at that commit; a second ensure
 * is cached, a pinned rev of the same commit too, another path for that commit reuses its bundle,
 * a new commit on the branch rebuilds; a URL
 * outside the operator's prefixes (403) and an unreachable one (503) fail before any build row,
 * builder VM or mirror exists; a repository with hooks and a `.gitattributes` filter runs nothing
 * on the host; the host's git ran as capsule-git (the mirror is that user's) when the host has it.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import * as freestyleModule from "freestyle";
import type { Freestyle } from "freestyle";
import { startServer, type RunningServer } from "../src/index.js";
import { client } from "../test-support/client.js";
import { call, destroyEngineState, hostGap, scratchDir, testServerOptions } from "../test-support/harness.js";
import { lookupGitUser } from "../src/repos/git-user.js";
import { deadPort, startGitServer, type GitServer } from "./builds-git-support.js";

interface VmSpecBuilder {
  repo(url: string, path: string): VmSpecBuilder;
}
const VmSpec = (freestyleModule as unknown as { VmSpec: new () => VmSpecBuilder }).VmSpec;
type Ensured = { snapshotId: string; buildId: string; cached: boolean };
function ensure(fs: Freestyle, spec: VmSpecBuilder): Promise<Ensured> {
  return (fs.vms.snapshots as unknown as { ensure(o: { spec: VmSpecBuilder }): Promise<Ensured> }).ensure({ spec });
}

describe("git layer", () => {
  let gap: string | false = false;
  let gs: GitServer;
  let dead: number;
  let server: RunningServer;
  let dataDir: string;
  let key: string;
  before(async () => {
    gap = (await hostGap()) ?? false;
    if (gap) {
      if (process.env.CI) throw new Error(`CI must run the sandbox tests, but: ${gap}`);
      return;
    }
    gs = await startGitServer();
    dead = await deadPort();
    dataDir = await scratchDir();
    server = await startServer(testServerOptions(dataDir, { repoPrefixes: [gs.url, `http://127.0.0.1:${dead}/`] }));
    key = server.keys.createKey("alice").key;
  });
  after(async () => {
    if (gap) return;
    try {
      await destroyEngineState(server.engine);
    } finally {
      await server.close();
      await fs.rm(dataDir, { recursive: true, force: true });
      await fs.rm(`${dataDir}-repos`, { recursive: true, force: true });
      await gs.close();
    }
  });

  /** Runs `command` in a VM booted from `snapshotId`, then deletes the VM. */
  async function inVm(snapshotId: string, command: string): Promise<string> {
    const created = await call(server.url, key, "POST", "/v1/vms", { snapshotId, idleTimeoutSeconds: null });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    try {
      const r = await call(server.url, key, "POST", `/v1/vms/${created.body.id as string}/exec-await`, { command });
      assert.equal(r.body.statusCode, 0, JSON.stringify(r.body));
      return r.body.stdout as string;
    } finally {
      await call(server.url, key, "DELETE", `/v1/vms/${created.body.id as string}`);
    }
  }

  it("repo(url, path) clones at the branch's commit; cached until a new commit, which rebuilds", async (ctx) => {
    if (gap) return ctx.skip(gap);
    const fs0 = client(server.url, key);
    const alice = server.keys.ensureAccount("alice");
    const url = await gs.create("app", { "README.md": "first\n", "src/main.sh": "echo hi\n" });
    const first = gs.head("app");
    const builds = server.svc.builds.buildRows.count(alice.id);

    let t0 = Date.now();
    const a = await ensure(fs0, new VmSpec().repo(url, "/srv/app"));
    ctx.diagnostic(`first build: ${Date.now() - t0} ms`);
    assert.equal(a.cached, false);
    const phases = server.svc.builds.buildRows.phases(a.buildId);
    assert.deepEqual(phases.map((p) => p.name), ["boot", "git", "snapshot"]);
    ctx.diagnostic(`git phase log: ${phases[1]!.log.split("\n").filter((l) => l.includes("bundle of")).join("; ")}`);
    const out = await inVm(a.snapshotId, "cd /srv/app && git rev-parse HEAD && git branch --show-current && git rev-parse --abbrev-ref @{upstream} && git remote get-url origin && git status --porcelain && cat README.md && stat -c %U . src/main.sh && git log --oneline | wc -l");
    assert.equal(out, `${first}\nmain\norigin/main\n${url}\nfirst\nroot\nroot\n1\n`, "a clean clone at the commit, on main tracking origin/main");
    const user = lookupGitUser();
    const mirrorsDir = `${dataDir}-repos`;
    const owners = await Promise.all((await fs.readdir(mirrorsDir)).map(async (n) => (await fs.stat(path.join(mirrorsDir, n, "packed-refs")).catch(() => fs.stat(path.join(mirrorsDir, n)))).uid));
    assert.deepEqual(owners, [user?.uid ?? 0], user ? "the fetch ran as capsule-git" : "no capsule-git user here: git ran as root");

    // Another spec of the same commit builds anew but reuses the commit's bundle.
    const elsewhere = await ensure(fs0, new VmSpec().repo(url, "/srv/elsewhere"));
    assert.equal(elsewhere.cached, false);
    assert.match(server.svc.builds.buildRows.phases(elsewhere.buildId).find((p) => p.name === "git")!.log, new RegExp(`${first} \\(main\\): bundle of \\d+ bytes \\(cached\\)`));

    t0 = Date.now();
    const b = await ensure(fs0, new VmSpec().repo(url, "/srv/app"));
    ctx.diagnostic(`cached ensure: ${Date.now() - t0} ms`);
    assert.deepEqual([b.snapshotId, b.cached], [a.snapshotId, true]);
    // The hash is the commit, not the rev's spelling: pinning the same commit is the same layer.
    const pinned = await call(server.url, key, "POST", "/v1/vms/snapshots", { template: { git: { config: {}, repos: [{ repo: url, path: "/srv/app", rev: first }] } } });
    assert.deepEqual([pinned.status, pinned.body.snapshotId, pinned.body.cached], [200, a.snapshotId, true], JSON.stringify(pinned.body));
    // The client's create with a root-level gitRepos is the same layer: it boots from the same snapshot.
    const created = await call(server.url, key, "POST", "/v1/vms", { gitRepos: [{ repo: url, path: "/srv/app" }], idleTimeoutSeconds: null });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    try {
      assert.equal(created.body.snapshotId, a.snapshotId);
      const head = await call(server.url, key, "POST", `/v1/vms/${created.body.id as string}/exec-await`, { command: "git -C /srv/app rev-parse HEAD" });
      assert.equal(head.body.stdout, `${first}\n`);
    } finally {
      await call(server.url, key, "DELETE", `/v1/vms/${created.body.id as string}`);
    }
    assert.equal(server.svc.builds.buildRows.count(alice.id), builds + 2, "two builds so far");

    const second = await gs.commit("app", { "NEW.txt": "second\n" });
    const c = await ensure(fs0, new VmSpec().repo(url, "/srv/app"));
    assert.equal(c.cached, false, "a new commit on the branch rebuilds");
    assert.notEqual(c.snapshotId, a.snapshotId);
    assert.equal(await inVm(c.snapshotId, "cd /srv/app && git rev-parse HEAD && cat NEW.txt && git log --oneline | wc -l"), `${second}\nsecond\n2\n`);
    assert.equal((await server.engine.listVms()).length, 0, "no builder VM is left");
  });

  it("a URL outside the prefixes is 403 and an unreachable one 503, before any build, VM or mirror", async (ctx) => {
    if (gap) return ctx.skip(gap);
    const alice = server.keys.ensureAccount("alice");
    const builds = server.svc.builds.buildRows.count(alice.id);
    const mirrors = `${dataDir}-repos`;
    const before = await fs.readdir(mirrors);
    const refused = await call(server.url, key, "POST", "/v1/vms/snapshots", { template: { git: { config: {}, repos: [{ repo: "https://github.com/octocat/Hello-World", path: "/app" }] } } });
    assert.deepEqual([refused.status, refused.body.code, refused.body.reason], [403, "FORBIDDEN", "REPO_NOT_ALLOWED"], JSON.stringify(refused.body));
    assert.match(refused.body.message ?? "", /template\.git\.repos\[0\]\.repo: https:\/\/github\.com\/octocat\/Hello-World is not a repository this server may clone/);
    const down = await call(server.url, key, "POST", "/v1/vms", { spec: { git: { config: {}, repos: [{ repo: `http://127.0.0.1:${dead}/gone.git`, path: "/app" }] } } });
    assert.deepEqual([down.status, down.body.code, down.body.reason], [503, "SERVICE_UNAVAILABLE", "REPO_UNREACHABLE"], JSON.stringify(down.body));
    assert.match(down.body.message ?? "", new RegExp(`spec\\.git\\.repos\\[0\\]: the host cannot fetch http://127\\.0\\.0\\.1:${dead}/gone\\.git`));
    assert.equal(server.svc.builds.buildRows.count(alice.id), builds, "no build row");
    assert.equal((await server.engine.listVms()).length, 0, "no VM");
    assert.deepEqual(await fs.readdir(mirrors), before, "no mirror, whole or half-made");
  });

  it("a repository with hooks and a .gitattributes filter runs nothing on the host; the VM gets its files", async (ctx) => {
    if (gap) return ctx.skip(gap);
    const marker = path.join(os.tmpdir(), `capsule-git-ran-${process.pid}`);
    const evil = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-git-evil-"));
    const saved = { ...process.env };
    try {
      // The worst host environment: config naming hooks and filter drivers. The server's git must ignore it.
      for (const h of ["reference-transaction", "post-checkout", "post-merge", "pre-auto-gc"]) await fs.writeFile(path.join(evil, h), `#!/bin/sh\ntouch ${marker}\n`, { mode: 0o755 });
      await fs.writeFile(path.join(evil, "gitconfig"), `[core]\n\thooksPath = ${evil}\n[filter "evil"]\n\tsmudge = sh -c 'touch ${marker}; cat'\n\tclean = cat\n`);
      const url = await gs.create("hooked", { ".gitattributes": "* filter=evil\n", "hooks/post-checkout": `#!/bin/sh\ntouch /tmp/ran-in-vm\n`, "data.txt": "plain\n" });
      Object.assign(process.env, { GIT_CONFIG_GLOBAL: path.join(evil, "gitconfig"), GIT_CONFIG_PARAMETERS: `'core.hooksPath'='${evil}'` });
      const r = await call(server.url, key, "POST", "/v1/vms/snapshots", { template: { git: { config: { user: { name: "Builder", email: "b@example.com" } }, repos: [{ repo: url, path: "/work/hooked", rev: "main" }] } } });
      process.env = saved;
      assert.equal(r.status, 200, JSON.stringify(r.body));
      await assert.rejects(fs.access(marker), "no hook or filter ran on the host");
      assert.equal(await inVm(r.body.snapshotId as string, "cat /work/hooked/data.txt && test ! -e /tmp/ran-in-vm && git config --system user.name && git config --system user.email"), "plain\nBuilder\nb@example.com\n");
    } finally {
      process.env = saved;
      await fs.rm(evil, { recursive: true, force: true });
      await fs.rm(marker, { force: true });
    }
  });
});

/**
 * The host's repository mirrors (repos/) without sandboxes, against scratch repos served on
 * 127.0.0.1: which URLs the policy allows, revs resolved to commits (HEAD, branch, tag, an
 * abbreviated id), a new commit seen at once, a full id the mirror has answered with no network,
 * an unreachable URL, a missing rev and a fetch past the size bound refused with nothing left
 * (no mirror, whole or partial), and no hook or config of the
 * host's environment run by the host's git; git as the capsule-git user (the mirror is its, a
 * root-only database is not readable to it), the total bound (LRU eviction of unheld mirrors,
 * REPO_MIRRORS_FULL when the held ones fill it) and unused mirrors collected (a fake clock).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { resolveConfig } from "../src/config.js";
import { ApiError } from "../src/errors.js";
import { resolveRepos } from "../src/builds/git-phase.js";
import { templateLayer } from "../src/builds/layers.js";
import crypto from "node:crypto";
import { REPO_LIMITS, RepoMirrors } from "../src/repos/mirrors.js";
import { RepoPolicy } from "../src/repos/policy.js";
import { lookupGitUser } from "../src/repos/git-user.js";
import { runGit } from "../src/repos/git.js";
import { deadPort, startGitServer, type GitServer } from "./builds-git-support.js";

async function refusal(p: Promise<unknown>): Promise<ApiError> {
  const err = await p.then(() => assert.fail("it was accepted"), (e: unknown) => e);
  assert.ok(err instanceof ApiError, String(err));
  return err;
}

describe("repository mirrors", () => {
  let gs: GitServer;
  let dir: string;
  before(async () => {
    gs = await startGitServer();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-mirrors-"));
  });
  after(async () => {
    await gs.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it("the policy allows URLs under a prefix by whole segments, normalized, http(s) only, no credentials", () => {
    const p = new RepoPolicy(["https://git.example/team", "http://127.0.0.1:9/"]);
    assert.deepEqual(p.schemes, ["https", "http"]);
    assert.equal(p.allowed("https://git.example/team/app.git"), "https://git.example/team/app.git");
    assert.equal(p.allowed("HTTPS://GIT.EXAMPLE:443/team/app"), "https://git.example/team/app");
    for (const bad of ["https://git.example/team-evil/app", "https://git.example/team/../other/app", "https://u:p@git.example/team/app", "https://git.example/team/app?x=1", "ssh://git.example/team/app", "ext::sh -c id", "repo_abc123", "file:///etc"]) {
      assert.equal(p.allowed(bad), undefined, bad);
    }
    assert.throws(() => new RepoPolicy(["git://x/"]), /repoPrefixes/);
  });

  it("resolves HEAD, a branch, a tag and an abbreviated commit; a new commit is seen; a known full id needs no network", async () => {
    const url = await gs.create("app", { "README.md": "one\n" });
    const m = new RepoMirrors(dir, new RepoPolicy([gs.url]));
    await m.recover();
    const first = gs.head("app");
    assert.deepEqual(await m.resolve(url, undefined, "t"), { url, commit: first, branch: "main" });
    const second = await gs.commit("app", { "README.md": "two\n" });
    assert.deepEqual(await m.resolve(url, "main", "t"), { url, commit: second, branch: "main" });
    const dev = await gs.commit("app", { "dev.txt": "d\n" }, "dev");
    execFileSync("git", ["--git-dir", path.join(gs.root, "app.git"), "tag", "-a", "-m", "v1", "v1", first], { env: { PATH: process.env.PATH, GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@t" } });
    assert.equal((await m.resolve(url, "dev", "t")).commit, dev);
    assert.deepEqual(await m.resolve(url, "v1", "t"), { url, commit: first }, "an annotated tag is its commit");
    assert.equal((await m.resolve(url, first.slice(0, 10), "t")).commit, first, "an abbreviated id of a commit in the history");
    const before = gs.requests;
    assert.deepEqual(await m.resolve(url, first, "t"), { url, commit: first });
    assert.equal(gs.requests, before, "a full id the mirror has asks nothing of the remote");
    const missing = await refusal(m.resolve(url, "no-such-branch", "template.git.repos[0]"));
    assert.deepEqual([missing.code, missing.message.startsWith("template.git.repos[0]: no branch, tag or ref no-such-branch")], ["VALIDATION_ERROR", true]);
    assert.equal((await refusal(m.resolve(url, "abcdef1234", "t"))).code, "VALIDATION_ERROR", "an id in no branch or tag");
  });

  it("the server's repoPrefixes come from CAPSULE_REPO_PREFIXES (normalized), none by default; a bad one stops the start", () => {
    const at = { dataDir: dir };
    assert.deepEqual(resolveConfig(at, {}).repoPrefixes, []);
    assert.deepEqual(resolveConfig(at, { CAPSULE_REPO_PREFIXES: "HTTPS://Git.Example/team, http://127.0.0.1:9/" }).repoPrefixes, ["https://git.example/team", "http://127.0.0.1:9/"]);
    assert.deepEqual(resolveConfig({ ...at, repoPrefixes: ["https://a.example/"] }, { CAPSULE_REPO_PREFIXES: "https://b.example/" }).repoPrefixes, ["https://a.example/"], "the option wins");
    assert.throws(() => resolveConfig(at, { CAPSULE_REPO_PREFIXES: "ssh://git.example/" }), /repoPrefixes: expected an http\(s\) URL/);
  });

  it("with no prefixes git.repos is a 501 naming the field and how to enable it; another URL is a 403 naming it", async () => {
    const { layer } = templateLayer({ git: { config: {}, repos: [{ repo: "https://git.example/a", path: "/app" }] } }, false);
    const off = await refusal(resolveRepos(undefined, layer));
    assert.deepEqual([off.status, off.code, off.extra.unsupported], [501, "BAD_REQUEST", true]);
    assert.match(off.message, /^template\.git\.repos is not supported by this server: .*--allow-repo/);
    const other = await refusal(resolveRepos(new RepoMirrors(dir, new RepoPolicy(["https://git.example/b"])), layer));
    assert.deepEqual([other.status, other.code, other.extra.reason], [403, "FORBIDDEN", "REPO_NOT_ALLOWED"]);
    assert.match(other.message, /^template\.git\.repos\[0\]\.repo: https:\/\/git\.example\/a is not a repository this server may clone/);
  });

  it("an unreachable URL is SERVICE_UNAVAILABLE (REPO_UNREACHABLE) and leaves no mirror", async () => {
    const port = await deadPort();
    const url = `http://127.0.0.1:${port}/gone.git`;
    const m = new RepoMirrors(dir, new RepoPolicy([`http://127.0.0.1:${port}/`]));
    const before = await fs.readdir(dir);
    const err = await refusal(m.resolve(url, undefined, "template.git.repos[0]"));
    assert.deepEqual([err.code, err.status, err.extra.reason], ["SERVICE_UNAVAILABLE", 503, "REPO_UNREACHABLE"]);
    assert.match(err.message, new RegExp(`cannot fetch ${url}`));
    assert.deepEqual(await fs.readdir(dir), before);
  });

  it("a fetch past the size bound fails and leaves no mirror, first fetch or later", async () => {
    const m = new RepoMirrors(dir, new RepoPolicy([gs.url]), { limits: { ...REPO_LIMITS, mirrorBytes: 64 * 1024 } });
    const big = { "blob.bin": crypto.randomBytes(256 * 1024).toString("base64") };
    const before = await fs.readdir(dir);
    const url = await gs.create("big", big);
    const err = await refusal(m.resolve(url, undefined, "t"));
    assert.deepEqual([err.code, err.extra.reason], ["SERVICE_UNAVAILABLE", "REPO_UNREACHABLE"]);
    assert.match(err.message, /larger than 65536 bytes/);
    assert.deepEqual(await fs.readdir(dir), before, "no mirror, not even a temporary one");
    const small = await gs.create("grows", { "a.txt": "a\n" });
    await m.resolve(small, undefined, "t");
    const withMirror = await fs.readdir(dir);
    await gs.commit("grows", big);
    assert.match((await refusal(m.resolve(small, undefined, "t"))).message, /larger than/);
    assert.deepEqual((await fs.readdir(dir)).length, withMirror.length - 1, "the mirror that grew past the bound is gone whole");
  });

  it("the host's git ignores hooks and filters from the environment's config; the mirror is bare", async () => {
    const marker = path.join(dir, "ran");
    const hooks = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-hooks-"));
    const cfg = path.join(hooks, "gitconfig");
    try {
      for (const h of ["reference-transaction", "post-checkout", "pre-auto-gc", "post-index-change"]) await fs.writeFile(path.join(hooks, h), `#!/bin/sh\ntouch ${marker}\n`, { mode: 0o755 });
      await fs.writeFile(cfg, `[core]\n\thooksPath = ${hooks}\n[filter "evil"]\n\tsmudge = touch ${marker}\n\tclean = touch ${marker}\n`);
      const url = await gs.create("hooked", { ".gitattributes": "* filter=evil\n", "hooks/post-checkout": `#!/bin/sh\ntouch ${marker}\n`, "a.txt": "a\n" });
      const saved = { ...process.env };
      Object.assign(process.env, { GIT_CONFIG_GLOBAL: cfg, GIT_CONFIG_PARAMETERS: `'core.hooksPath'='${hooks}'` });
      try {
        const m = new RepoMirrors(dir, new RepoPolicy([gs.url]));
        const r = await m.resolve(url, undefined, "t");
        await (await m.bundle(url, r.commit)).file.close();
      } finally {
        process.env = saved;
      }
      await assert.rejects(fs.access(marker), "no hook or filter ran on the host");
      const mirror = (await fs.readdir(dir)).find((n) => n.endsWith(".git") && execFileSync("git", ["--git-dir", path.join(dir, n), "rev-parse", "--is-bare-repository"], { encoding: "utf8" }).trim() === "true");
      assert.ok(mirror, "the mirror is a bare repository");
    } finally {
      await fs.rm(hooks, { recursive: true, force: true });
    }
  });

  it("git runs as capsule-git: the mirror is that user's, and it cannot read a root-only database", async (t) => {
    const user = lookupGitUser();
    if (!user) return t.skip("no capsule-git user on this host (scripts/setup.sh creates it)");
    const root = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-mirrors-user-"));
    const data = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-data-"));
    const m = new RepoMirrors(path.join(root, "mirrors"), new RepoPolicy([gs.url]), { user });
    await assert.rejects(m.recover(), /not searchable by capsule-git/, "a mirrors dir the user cannot reach stops the start");
    await fs.chmod(root, 0o755); // as /var/lib is, above <dataDir>-repos
    try {
      const db = path.join(data, "server.db");
      await fs.writeFile(db, "secret", { mode: 0o600 });
      await m.recover();
      const url = await gs.create("owned", { "a.txt": "a\n" });
      await m.resolve(url, undefined, "t");
      const [mirror] = (await fs.readdir(m.root)).filter((n) => n.endsWith(".git"));
      for (const f of [m.root, path.join(m.root, mirror!), path.join(m.root, mirror!, "packed-refs"), path.join(m.root, mirror!, "objects", "pack")]) {
        const st = await fs.stat(f).catch(() => undefined);
        if (st) assert.equal(st.uid, user.uid, `${f} was written by the git user`);
      }
      const packs = await fs.readdir(path.join(m.root, mirror!, "objects", "pack"));
      assert.ok(packs.some((p) => p.endsWith(".pack")), "the fetch kept a pack (fetch.unpackLimit=1)");
      for (const p of packs) assert.equal((await fs.stat(path.join(m.root, mirror!, "objects", "pack", p))).uid, user.uid);
      const read = await runGit(["hash-object", "--", db], { timeoutMs: 10_000, user }).then(() => "read", (e: Error) => e.message);
      assert.match(read, /Permission denied|exited 128/, "git as capsule-git cannot read the data dir");
      assert.ok((await runGit(["hash-object", "--", db], { timeoutMs: 10_000 })).length > 0, "the same command as root can (so the refusal is the user's)");
    } finally {
      await fs.rm(root, { recursive: true, force: true });
      await fs.rm(data, { recursive: true, force: true });
    }
  });

  it("the mirrors' total bound evicts the least recently used unheld mirror, refuses when held ones fill it, and unused mirrors go", async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-mirrors-total-"));
    let now = 1_000_000;
    try {
      const blob = (n: number) => ({ "blob.bin": crypto.randomBytes(n).toString("base64") });
      const urls = [await gs.create("t1", blob(256 * 1024)), await gs.create("t2", blob(256 * 1024)), await gs.create("t3", blob(256 * 1024))];
      // Room for two of these mirrors (each a little over 256 KiB on disk: random bytes do not compress), not three.
      const m = new RepoMirrors(root, new RepoPolicy([gs.url]), { limits: { ...REPO_LIMITS, totalBytes: 700 * 1024, unusedMs: 60_000 }, now: () => now });
      await m.recover();
      const mirrors = async () => (await fs.readdir(root)).filter((n) => n.endsWith(".git")).length;
      await m.resolve(urls[0]!, undefined, "t");
      now += 10;
      const hold = m.hold(urls[1]!);
      await m.resolve(urls[1]!, undefined, "t");
      assert.equal(await mirrors(), 2);
      now += 10;
      await m.resolve(urls[2]!, undefined, "t");
      await new Promise((r) => setTimeout(r, 100)); // the eviction's rm runs under its lock
      assert.equal(await mirrors(), 2, "the least recently used unheld mirror (t1) went");
      const held = m.hold(urls[2]!);
      const full = await refusal(m.resolve(urls[0]!, undefined, "template.git.repos[0]"));
      assert.deepEqual([full.code, full.status, full.extra.reason], ["SERVICE_UNAVAILABLE", 503, "REPO_MIRRORS_FULL"]);
      assert.match(full.message, /^template\.git\.repos\[0\]: the host cannot fetch .* repository mirrors are full/);
      assert.equal(await mirrors(), 2, "the refused fetch left nothing");
      hold();
      held();
      now += 120_000;
      const small = await gs.create("t4", { "a.txt": "a\n" });
      await m.resolve(small, undefined, "t");
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(await mirrors(), 1, "mirrors unused past unusedMs were collected; only the one just used is left");
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });

  it("bundles are cached per commit inside the mirror: a second bundle of one commit is the same file; the newest few are kept", async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-mirrors-bundles-"));
    try {
      const m = new RepoMirrors(root, new RepoPolicy([gs.url]), { limits: { ...REPO_LIMITS, bundlesPerMirror: 2 } });
      await m.recover();
      const url = await gs.create("bundled", { "a.txt": "a\n" });
      const first = await m.resolve(url, undefined, "t");
      const made = await m.bundle(url, first.commit);
      const ino = (await made.file.stat()).ino;
      await made.file.close();
      assert.equal(made.cached, false);
      const again = await m.bundle(url, first.commit);
      assert.deepEqual([again.cached, (await again.file.stat()).ino, again.ref], [true, ino, `refs/capsule/pin/${first.commit}`], "the same file, no new git bundle");
      await again.file.close();
      for (const n of [2, 3]) {
        await gs.commit("bundled", { "a.txt": `${n}\n` });
        await (await m.bundle(url, (await m.resolve(url, undefined, "t")).commit)).file.close();
      }
      const [mirror] = (await fs.readdir(root)).filter((n) => n.endsWith(".git"));
      assert.equal((await fs.readdir(path.join(root, mirror!, "capsule-bundles"))).length, 2, "only bundlesPerMirror are kept");
      assert.deepEqual((await fs.readdir(root)).filter((n) => n.includes(".tmp-")), [], "no temporary bundle left");
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });
});

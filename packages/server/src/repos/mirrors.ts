/**
 * Bare mirrors of the repositories builds clone, one per URL under `<dataDir>/repos/`. A build
 * names a repository and a rev; the host resolves the rev to a commit (`git ls-remote`), fetches
 * the branches and tags into the mirror when it lacks that commit, and later hands the builder VM
 * a bundle of the commit's history (builds/git-phase.ts). Nothing of a repository is checked
 * out, built or run on the host: the mirrors are bare, and git runs through {@link runGit}.
 *
 * A mirror is made whole or not at all: the first fetch goes into a temporary dir renamed into
 * place only on success, and a later fetch that fails (a timeout, the size bound) leaves the refs
 * as they were (git updates them only after the pack is in) and its partial pack is removed; a
 * mirror that grew past the size bound is removed whole.
 * One operation per URL runs at a time.
 *
 * Git runs as the unprivileged `capsule-git` user (git-user.ts) when the host has it (scripts/setup.sh
 * makes it): the mirrors' dir is that user's (0700) and lies outside the data dir, which stays
 * root's, so a git that a hostile repository or remote subverts can read nothing of the server
 * (its database, keys, VM disks) and write only the mirrors. Without that user git runs as the
 * server (root), and the server says so at start-up. Either way the hardening in git.ts (no hooks,
 * fsck of every object, allowed schemes only, no redirects) and the time and size bounds here apply.
 *
 * The mirrors together are bounded too (`totalBytes`): a fetch that needs room evicts the least
 * recently used mirrors no build holds, and fails with REPO_MIRRORS_FULL when even that cannot
 * make room; a mirror unused for `unusedMs` is removed (swept at start-up and before each resolve,
 * so an idle server does no work). When a mirror was last used is its dir's mtime, which each use
 * sets, so a restart keeps the order.
 * @module
 */
import crypto from "node:crypto";
import fs, { type FileHandle } from "node:fs/promises";
import path from "node:path";
import { KeyedMutex } from "@capsule/engine";
import { ApiError } from "../errors.js";
import { MirrorBudget } from "./budget.js";
import { GitError, lastLine, runGit, type GitRun } from "./git.js";
import type { GitUser } from "./git-user.js";
import type { RepoPolicy } from "./policy.js";

export const REPO_LIMITS = {
  /** `git ls-remote` of one URL. */
  lsRemoteMs: 30_000,
  /** One fetch into a mirror. */
  fetchMs: 10 * 60_000,
  /** A mirror's size on disk; a fetch that grows it past this is killed. */
  mirrorBytes: 2 * 1024 ** 3,
  /** All mirrors together (`repoMirrorsMaxBytes`); least recently used ones go to make room. */
  totalBytes: 20 * 1024 ** 3,
  /** A mirror no build used for this long is removed (`repoMirrorUnusedDays`). */
  unusedMs: 30 * 24 * 3600_000,
  /** How often a fetch's new packs are measured against the bounds. */
  sizeCheckMs: 250,
  /** Every this many checks the whole mirror is measured (loose objects of a dumb-HTTP fetch). */
  fullSizeCheckEvery: 20,
  /** Local git commands on a mirror (cat-file, rev-parse, update-ref). */
  localMs: 30_000,
  /** `git bundle create` of one commit's history. */
  bundleMs: 5 * 60_000,
  /** Bundles cached per mirror (the newest by use); each counts in the mirror's bytes. */
  bundlesPerMirror: 4,
} as const;

export type RepoLimits = { readonly [K in keyof typeof REPO_LIMITS]: number };

/** Where a mirror keeps its cached bundles (git ignores a dir it does not know in a repository). */
const BUNDLES_DIR = "capsule-bundles";

/** A rev the host can resolve: a ref name git accepts, or a (possibly abbreviated) commit id. */
const REV_RE = /^(?!-)(?!.*\.\.)(?!.*\/\/)(?!.*@\{)[A-Za-z0-9._/+-]{1,255}(?<![./])$/;
const COMMIT_RE = /^[0-9a-f]{4,40}$/i;
const FULL_COMMIT_RE = /^[0-9a-f]{40}$/;

export function isValidRev(rev: string): boolean {
  return REV_RE.test(rev) && !rev.endsWith(".lock");
}

/** A repository at one commit; `branch` when the rev named one (the VM's checkout is then on it). */
export interface ResolvedRepo {
  url: string;
  commit: string;
  branch?: string;
}

export interface MirrorOptions {
  limits?: RepoLimits;
  /** Who git runs as; undefined: the server's own user (see the module's comment). */
  user?: GitUser | undefined;
  now?: () => number;
}

export class RepoMirrors {
  /** One fetch or read of a mirror at a time, per mirror (so per URL). */
  readonly #locks = new KeyedMutex();
  readonly #budget: MirrorBudget;
  readonly #limits: RepoLimits;
  readonly user: GitUser | undefined;

  constructor(
    readonly root: string,
    readonly policy: RepoPolicy,
    opts: MirrorOptions = {},
  ) {
    this.#limits = opts.limits ?? REPO_LIMITS;
    this.user = opts.user;
    this.#budget = new MirrorBudget(this.#limits.totalBytes, this.#limits.unusedMs, opts.now);
  }

  /**
   * At start-up: the mirrors' dir (the git user's, 0700), what a crash left half-made (a first
   * fetch's dir, a bundle) removed, each mirror measured once, and the unused ones collected.
   */
  async recover(): Promise<void> {
    await fs.mkdir(this.root, { recursive: true, mode: 0o700 });
    await fs.chmod(this.root, 0o700);
    for (const name of await fs.readdir(this.root)) {
      const dir = path.join(this.root, name);
      if (name.includes(".tmp-")) await fs.rm(dir, { recursive: true, force: true });
      else if (name.endsWith(".git")) this.#budget.add(name, await dirBytes(dir), (await fs.stat(dir)).mtimeMs);
    }
    if (this.user) {
      await assertSearchable(path.dirname(this.root), this.user);
      // Mirrors made while git ran as root (before the user existed) become the git user's.
      await chownTree(this.root, this.user);
    }
    this.#sweep();
  }

  /**
   * Keeps the mirror of `url` from eviction and collection until the function is called: a build
   * holds its repositories from their resolution until its git phase has bundled them.
   */
  hold(url: string): () => void {
    const name = this.#name(url);
    const release = this.#budget.hold(name);
    return () => {
      release();
      // When it was last used survives a restart as the dir's mtime.
      const t = new Date();
      void fs.utimes(path.join(this.root, name), t, t).catch(() => undefined);
    };
  }

  /**
   * The commit `rev` names (the remote's HEAD when absent), present in the mirror afterwards. A
   * full commit id the mirror already has needs no network. `where` names the field in errors.
   */
  resolve(url: string, rev: string | undefined, where: string): Promise<ResolvedRepo> {
    this.#sweep();
    return this.#held(url, async (dir) => {
      if (rev !== undefined && FULL_COMMIT_RE.test(rev) && (await this.#hasCommit(dir, rev))) return { url, commit: rev };
      const refs = await this.#lsRemote(url, where);
      let found = pickRef(refs, rev);
      if (!found && (rev === undefined || !COMMIT_RE.test(rev))) {
        throw new ApiError("VALIDATION_ERROR", `${where}: ${rev === undefined ? "the repository has no HEAD" : `no branch, tag or ref ${rev}`} in ${url}`);
      }
      if (!found || !(await this.#hasCommit(dir, found.commit))) await this.#fetch(url, dir, where);
      // A commit id that is no ref's tip: it must be in the history of a branch or tag.
      found ??= { commit: (await this.#revParse(dir, rev!)) ?? "" };
      if (found.commit === "" || !(await this.#hasCommit(dir, found.commit))) {
        throw new ApiError("VALIDATION_ERROR", `${where}: commit ${rev ?? found.commit} is not in any branch or tag of ${url}`);
      }
      return { url, commit: found.commit, ...(found.branch ? { branch: found.branch } : {}) };
    });
  }

  /**
   * A bundle of `commit`'s history, opened (so a later trim cannot take it away while it is read),
   * and the ref it carries the commit under. Bundles are cached per commit inside the mirror
   * (`capsule-bundles/`, counted in its bytes, so the bounds cover them; the newest
   * `bundlesPerMirror` kept): a second build of the same commit, into any spec, reuses it. A
   * bundle that would put the mirror past a bound is handed out once and not kept.
   */
  bundle(url: string, commit: string): Promise<{ file: FileHandle; ref: string; cached: boolean }> {
    return this.#held(url, async (gitDir) => {
      const name = path.basename(gitDir);
      const ref = `refs/capsule/pin/${commit}`;
      const dir = path.join(gitDir, BUNDLES_DIR);
      const cachedFile = path.join(dir, `${commit}.bundle`);
      const hit = await fs.open(cachedFile).catch(() => undefined);
      if (hit) {
        const t = new Date();
        await fs.utimes(cachedFile, t, t);
        return { file: hit, ref, cached: true };
      }
      // git writes the bundle as its user, in the mirrors' dir (that user's); renamed into the cache whole.
      const tmp = path.join(this.root, `bundle.tmp-${crypto.randomBytes(6).toString("hex")}`);
      await runGit(["update-ref", ref, commit], this.#run({ gitDir, timeoutMs: this.#limits.localMs }));
      try {
        await runGit(["bundle", "create", "-q", tmp, ref], this.#run({ gitDir, timeoutMs: this.#limits.bundleMs }));
      } catch (err) {
        await fs.rm(tmp, { force: true });
        throw err;
      } finally {
        await runGit(["update-ref", "-d", ref], this.#run({ gitDir, timeoutMs: this.#limits.localMs }));
      }
      const file = await fs.open(tmp);
      const size = (await file.stat()).size;
      const bytes = this.#budget.bytesOf(name) + size;
      const victims = bytes <= this.#limits.mirrorBytes ? this.#budget.makeRoom(name, bytes) : undefined;
      if (victims === undefined) {
        await fs.rm(tmp, { force: true });
        return { file, ref, cached: false };
      }
      this.#remove(victims);
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      if (this.user) await fs.lchown(dir, this.user.uid, this.user.gid);
      await fs.rename(tmp, cachedFile);
      this.#budget.setBytes(name, bytes - (await trimBundles(dir, this.#limits.bundlesPerMirror)));
      return { file, ref, cached: false };
    });
  }

  /** Runs `fn` on the mirror's dir under its lock, holding it (no eviction) meanwhile. */
  async #held<T>(url: string, fn: (dir: string) => Promise<T>): Promise<T> {
    const name = this.#name(url);
    const release = this.hold(url);
    try {
      return await this.#locks.run(name, () => fn(path.join(this.root, name)));
    } finally {
      release();
    }
  }

  #run(run: GitRun): GitRun {
    return { ...run, user: this.user };
  }

  /** Removes mirrors the budget let go: under their lock, which nothing holds or waits for (they are not held). */
  #remove(names: string[]): void {
    for (const name of names) void this.#locks.run(name, () => fs.rm(path.join(this.root, name), { recursive: true, force: true }));
  }

  #sweep(): void {
    this.#remove(this.#budget.expired());
  }

  #name(url: string): string {
    return `${crypto.createHash("sha256").update(url).digest("hex").slice(0, 32)}.git`;
  }

  async #lsRemote(url: string, where: string): Promise<Map<string, string>> {
    let out: string;
    try {
      out = await runGit(["ls-remote", "--symref", "--", url], this.#run({ timeoutMs: this.#limits.lsRemoteMs, schemes: this.policy.schemes }));
    } catch (err) {
      throw unreachable(url, where, err);
    }
    const refs = new Map<string, string>();
    for (const line of out.split("\n")) {
      const [left, name] = line.split("\t");
      if (left === undefined || name === undefined) continue;
      // `ref: refs/heads/main\tHEAD`: which branch HEAD is, kept as "->HEAD".
      if (left.startsWith("ref: ")) refs.set(`->${name}`, left.slice(5));
      else if (FULL_COMMIT_RE.test(left)) refs.set(name, left);
    }
    return refs;
  }

  /**
   * Fetches the branches and tags (not refs/pull/* and the like, which can dwarf a repository)
   * with the time and size bounds; a first fetch builds the mirror aside and renames it in.
   */
  async #fetch(url: string, dir: string, where: string): Promise<void> {
    const name = path.basename(dir);
    const exists = await fs.access(dir).then(() => true, () => false);
    const target = exists ? dir : `${dir}.tmp-${crypto.randomBytes(6).toString("hex")}`;
    const tooLarge = `the repository is larger than ${this.#limits.mirrorBytes} bytes`;
    let full: ApiError | undefined;
    // The mirror's size as the bounds see it, or why git must stop.
    const overBound = (bytes: number): string | undefined => {
      if (bytes > this.#limits.mirrorBytes) return tooLarge;
      const victims = this.#budget.makeRoom(name, bytes);
      if (victims === undefined) {
        full = mirrorsFull(url, where, this.#limits.totalBytes);
        return full.message;
      }
      this.#remove(victims);
      this.#budget.setBytes(name, bytes);
      return undefined;
    };
    try {
      if (!exists) await runGit(["init", "--bare", "-q", "--template=", target], this.#run({ timeoutMs: this.#limits.localMs }));
      const watch = new GrowthWatch(target, this.#budget.bytesOf(name), this.#limits.fullSizeCheckEvery);
      await watch.start();
      await runGit(["-c", "fetch.unpackLimit=1", "fetch", "--prune", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules", "--", url, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"], this.#run({
        gitDir: target,
        timeoutMs: this.#limits.fetchMs,
        schemes: this.policy.schemes,
        watchEveryMs: this.#limits.sizeCheckMs,
        watch: async () => overBound(await watch.bytes()),
      }));
      // A fetch quicker than one size check is measured once more, whole, at its end.
      const why = overBound(await dirBytes(target));
      if (why !== undefined) throw new GitError(why, "", false);
      if (!exists) await fs.rename(target, dir);
    } catch (err) {
      // A mirror past the bound goes whole (its refs may already name what was fetched); any
      // other failure left the refs as they were, and only its partial packs go.
      if (!exists || (err instanceof GitError && err.message === tooLarge)) await fs.rm(target, { recursive: true, force: true });
      else await removePartialPacks(dir);
      this.#budget.setBytes(name, exists ? await dirBytes(dir) : 0);
      throw full ?? unreachable(url, where, err);
    }
  }

  async #hasCommit(gitDir: string, commit: string): Promise<boolean> {
    if (!(await fs.access(gitDir).then(() => true, () => false))) return false;
    return runGit(["cat-file", "-e", `${commit}^{commit}`], this.#run({ gitDir, timeoutMs: this.#limits.localMs })).then(() => true, () => false);
  }

  async #revParse(gitDir: string, rev: string): Promise<string | undefined> {
    const out = await runGit(["rev-parse", "-q", "--verify", "--end-of-options", `${rev}^{commit}`], this.#run({ gitDir, timeoutMs: this.#limits.localMs })).catch(() => "");
    return FULL_COMMIT_RE.test(out.trim()) ? out.trim() : undefined;
  }
}

/** The ref `rev` names in an ls-remote listing: an exact ref, a branch, then a tag (peeled). */
function pickRef(refs: Map<string, string>, rev: string | undefined): { commit: string; branch?: string } | undefined {
  if (rev === undefined) {
    const head = refs.get("HEAD");
    const target = refs.get("->HEAD");
    if (!head) return undefined;
    return target?.startsWith("refs/heads/") ? { commit: head, branch: target.slice("refs/heads/".length) } : { commit: head };
  }
  const branch = refs.get(`refs/heads/${rev}`) ?? (rev.startsWith("refs/heads/") ? refs.get(rev) : undefined);
  if (branch) return { commit: branch, branch: rev.replace(/^refs\/heads\//, "") };
  const commit = refs.get(`refs/tags/${rev}^{}`) ?? refs.get(`refs/tags/${rev}`) ?? (rev.startsWith("refs/") ? (refs.get(`${rev}^{}`) ?? refs.get(rev)) : undefined);
  return commit ? { commit } : undefined;
}

function unreachable(url: string, where: string, err: unknown): ApiError {
  const why = err instanceof GitError ? `${err.message}${err.stderr && !err.message.includes(lastLine(err.stderr)) ? ` (${lastLine(err.stderr)})` : ""}` : String(err);
  return new ApiError("SERVICE_UNAVAILABLE", `${where}: the host cannot fetch ${url}: ${why}`, undefined, { reason: "REPO_UNREACHABLE" });
}

function mirrorsFull(url: string, where: string, totalBytes: number): ApiError {
  return new ApiError("SERVICE_UNAVAILABLE", `${where}: the host cannot fetch ${url}: its repository mirrors are full (${totalBytes} bytes, the operator's repoMirrorsMaxBytes, taken by mirrors that running builds use); retry when builds have ended`, undefined, { reason: "REPO_MIRRORS_FULL" });
}

/**
 * A fetch's mirror measured cheaply while git runs: its size before plus what is new under
 * `objects/pack` (fetch.unpackLimit=1 makes git keep what it receives as a pack there, so one
 * small dir is read per check instead of the whole mirror), and the whole mirror every
 * `fullEvery` checks (a dumb-HTTP fetch writes loose objects instead).
 */
class GrowthWatch {
  #packsBefore = new Set<string>();
  #checks = 0;

  constructor(
    private readonly gitDir: string,
    private readonly before: number,
    private readonly fullEvery: number,
  ) {}

  async start(): Promise<void> {
    this.#packsBefore = new Set(await fs.readdir(path.join(this.gitDir, "objects", "pack")).catch(() => []));
  }

  async bytes(): Promise<number> {
    if (++this.#checks % this.fullEvery === 0) return dirBytes(this.gitDir);
    const pack = path.join(this.gitDir, "objects", "pack");
    let grown = 0;
    for (const f of await fs.readdir(pack).catch(() => [])) {
      if (!this.#packsBefore.has(f)) grown += await fs.stat(path.join(pack, f)).then((s) => s.size, () => 0);
    }
    return this.before + grown;
  }
}

/** Keeps the `keep` most recently used bundles in `dir`; answers the bytes removed. */
async function trimBundles(dir: string, keep: number): Promise<number> {
  const files = await Promise.all((await fs.readdir(dir)).map(async (n) => ({ file: path.join(dir, n), st: await fs.stat(path.join(dir, n)) })));
  let removed = 0;
  for (const { file, st } of files.sort((a, b) => b.st.mtimeMs - a.st.mtimeMs).slice(keep)) {
    await fs.rm(file, { force: true });
    removed += st.size;
  }
  return removed;
}

/** Git as `user` must reach the mirrors' dir through every dir above it: else a clear start-up error, not a failed first build. */
async function assertSearchable(dir: string, user: GitUser): Promise<void> {
  for (let d = dir; ; d = path.dirname(d)) {
    const st = await fs.stat(d);
    const x = st.uid === user.uid ? st.mode & 0o100 : st.gid === user.gid ? st.mode & 0o010 : st.mode & 0o001;
    if (x === 0) throw new Error(`repository mirrors: ${d} is not searchable by ${user.name} (mode ${(st.mode & 0o777).toString(8)}), so git could not reach the mirrors under it; set repoMirrorsDir to a dir below world-searchable parents`);
    if (d === path.dirname(d)) return;
  }
}

/** The mirrors' dir and every mirror in it that is not yet the user's (made while git ran as root), given to it. */
async function chownTree(root: string, user: GitUser): Promise<void> {
  await fs.lchown(root, user.uid, user.gid);
  for (const name of await fs.readdir(root)) {
    const top = path.join(root, name);
    if ((await fs.lstat(top)).uid === user.uid) continue;
    await fs.lchown(top, user.uid, user.gid);
    for (const e of await fs.readdir(top, { recursive: true, withFileTypes: true })) await fs.lchown(path.join(e.parentPath, e.name), user.uid, user.gid);
  }
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    if (!e.isFile()) continue;
    total += await fs.stat(path.join(e.parentPath, e.name)).then((s) => s.size, () => 0);
  }
  return total;
}

/** What a killed fetch leaves: its temporary pack and quarantine dirs. */
async function removePartialPacks(gitDir: string): Promise<void> {
  const objects = path.join(gitDir, "objects");
  for (const name of await fs.readdir(objects).catch(() => [])) {
    if (name.startsWith("incoming-")) await fs.rm(path.join(objects, name), { recursive: true, force: true });
  }
  const pack = path.join(objects, "pack");
  for (const name of await fs.readdir(pack).catch(() => [])) {
    if (name.startsWith("tmp_")) await fs.rm(path.join(pack, name), { force: true });
  }
}

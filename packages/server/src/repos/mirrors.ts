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
 * Git runs as root: the data dir is root-only (0700, enforced by the engine on every open) and
 * git resolves the mirror's absolute path, so an unprivileged git could not reach it. What stands
 * between a hostile remote and the host is the hardening in git.ts (no hooks, fsck of every
 * object, allowed schemes only, no redirects) plus the time and size bounds here.
 * @module
 */
import crypto from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { KeyedMutex } from "@capsule/engine";
import { ApiError } from "../errors.js";
import { GitError, lastLine, runGit } from "./git.js";
import type { RepoPolicy } from "./policy.js";

export const REPO_LIMITS = {
  /** `git ls-remote` of one URL. */
  lsRemoteMs: 30_000,
  /** One fetch into a mirror. */
  fetchMs: 10 * 60_000,
  /** A mirror's size on disk; a fetch that grows it past this is killed. */
  mirrorBytes: 2 * 1024 ** 3,
  /** How often a fetch's mirror is measured against `mirrorBytes`. */
  sizeCheckMs: 250,
  /** Local git commands on a mirror (cat-file, rev-parse, update-ref). */
  localMs: 30_000,
  /** `git bundle create` of one commit's history. */
  bundleMs: 5 * 60_000,
} as const;

export type RepoLimits = { readonly [K in keyof typeof REPO_LIMITS]: number };

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

export class RepoMirrors {
  /** One fetch or read of a mirror at a time, per URL. */
  readonly #locks = new KeyedMutex();

  constructor(
    readonly root: string,
    readonly policy: RepoPolicy,
    private readonly limits: RepoLimits = REPO_LIMITS,
  ) {}

  /** At start-up: the mirrors' dir, with what a crash left half-made (a first fetch's dir, a bundle) removed. */
  async recover(): Promise<void> {
    await fs.mkdir(this.root, { recursive: true, mode: 0o700 });
    for (const name of await fs.readdir(this.root)) {
      if (name.includes(".tmp-")) await fs.rm(path.join(this.root, name), { recursive: true, force: true });
    }
  }

  /**
   * The commit `rev` names (the remote's HEAD when absent), present in the mirror afterwards. A
   * full commit id the mirror already has needs no network. `where` names the field in errors.
   */
  resolve(url: string, rev: string | undefined, where: string): Promise<ResolvedRepo> {
    return this.#locks.run(url, async () => {
      const dir = this.#dir(url);
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
   * Writes a bundle of `commit`'s history to `file` and answers the ref the bundle carries it
   * under. The ref exists in the mirror only while the bundle is made (a bundle needs a ref).
   */
  bundle(url: string, commit: string, file: string): Promise<string> {
    return this.#locks.run(url, async () => {
      const gitDir = this.#dir(url);
      const ref = `refs/capsule/pin/${commit}`;
      await runGit(["update-ref", ref, commit], { gitDir, timeoutMs: this.limits.localMs });
      try {
        await runGit(["bundle", "create", "-q", file, ref], { gitDir, timeoutMs: this.limits.bundleMs });
      } finally {
        await runGit(["update-ref", "-d", ref], { gitDir, timeoutMs: this.limits.localMs });
      }
      return ref;
    });
  }

  #dir(url: string): string {
    return path.join(this.root, `${crypto.createHash("sha256").update(url).digest("hex").slice(0, 32)}.git`);
  }

  async #lsRemote(url: string, where: string): Promise<Map<string, string>> {
    let out: string;
    try {
      out = await runGit(["ls-remote", "--symref", "--", url], { timeoutMs: this.limits.lsRemoteMs, schemes: this.policy.schemes });
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
    const exists = await fs.access(dir).then(() => true, () => false);
    const target = exists ? dir : `${dir}.tmp-${crypto.randomBytes(6).toString("hex")}`;
    const tooLarge = `the repository is larger than ${this.limits.mirrorBytes} bytes`;
    try {
      if (!exists) await runGit(["init", "--bare", "-q", target], { timeoutMs: this.limits.localMs });
      await runGit(["fetch", "--prune", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules", "--", url, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"], {
        gitDir: target,
        timeoutMs: this.limits.fetchMs,
        schemes: this.policy.schemes,
        watchEveryMs: this.limits.sizeCheckMs,
        watch: async () => ((await dirBytes(target)) > this.limits.mirrorBytes ? tooLarge : undefined),
      });
      // A fetch quicker than one size check is measured once more at its end.
      if ((await dirBytes(target)) > this.limits.mirrorBytes) throw new GitError(tooLarge, "", false);
      if (!exists) await fs.rename(target, dir);
    } catch (err) {
      // A mirror past the bound goes whole (its refs may already name what was fetched); any
      // other failure left the refs as they were, and only its partial packs go.
      if (!exists || (err instanceof GitError && err.message === tooLarge)) await fs.rm(target, { recursive: true, force: true });
      else await removePartialPacks(dir);
      throw unreachable(url, where, err);
    }
  }

  async #hasCommit(gitDir: string, commit: string): Promise<boolean> {
    if (!(await fs.access(gitDir).then(() => true, () => false))) return false;
    return runGit(["cat-file", "-e", `${commit}^{commit}`], { gitDir, timeoutMs: this.limits.localMs }).then(() => true, () => false);
  }

  async #revParse(gitDir: string, rev: string): Promise<string | undefined> {
    const out = await runGit(["rev-parse", "-q", "--verify", "--end-of-options", `${rev}^{commit}`], { gitDir, timeoutMs: this.limits.localMs }).catch(() => "");
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

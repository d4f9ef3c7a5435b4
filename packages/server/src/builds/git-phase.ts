/**
 * The `git` layer field: repositories the operator allows (`repoPrefixes`), resolved to commits
 * on the host before the layer is hashed, and cloned into the builder VM from a bundle.
 *
 * Why a bundle and not git's dumb HTTP from the mirror through a listener at
 * `host.capsule.internal` (the first design): the bundle needs no listener, no firewall rule and
 * no access control between tenants (a listener every VM can reach would serve every mirror to
 * every VM), and it travels over the agent's file upload, which the build already uses. It carries
 * the commit's history packed (smaller than a tar of the tree: 1.25 MB against 2.9 MB for this
 * repository), and the VM's own git turns it into a real clone (`.git`, history, `origin` set to
 * the URL, the branch checked out and tracking it), which a Freestyle user expects of `repo()`.
 * A `git archive` tar would be about 0.35 s faster per repository here (docs/builds.md has the
 * figures) but leaves no `.git`.
 * The checkout, and any `.gitattributes` filter or hook the repository names, happens inside the
 * VM, never on the host.
 * @module
 */
import type { Engine } from "@capsule/engine";
import { shq } from "@capsule/contract/shell";
import { ApiError } from "../errors.js";
import type { RepoMirrors, ResolvedRepo } from "../repos/mirrors.js";
import type { BuildLayer } from "./layers.js";

export const GIT_PHASE_LIMITS = {
  /** Installing git in a VM whose base has none (through the apt cache). */
  installMs: 10 * 60_000,
  /** One clone from its bundle, checkout included. */
  cloneMs: 10 * 60_000,
} as const;

/**
 * Every repository the layer names, allowed and resolved to a commit (in the mirror afterwards),
 * before any build row or VM exists: a refusal or an unreachable remote leaves nothing behind.
 * The mirrors stay held (not evicted) until `release`, which the build calls when it has ended.
 */
export async function resolveRepos(mirrors: RepoMirrors | undefined, layer: BuildLayer): Promise<{ repos: ResolvedRepo[]; release: () => void }> {
  const resolved: ResolvedRepo[] = [];
  const holds: Array<() => void> = [];
  const release = () => holds.forEach((h) => h());
  try {
    for (const r of layer.repos) {
      const field = r.where.replace(/\[\d+\]$/, "");
      if (!mirrors) {
        throw new ApiError("BAD_REQUEST", `${field} is not supported by this server: its operator enables repositories by allowing URL prefixes (capsule serve --allow-repo <prefix>, CAPSULE_REPO_PREFIXES, or repoPrefixes in capsule.json)`, 501, { unsupported: true });
      }
      const url = mirrors.policy.allowed(r.repo);
      if (url === undefined) {
        throw new ApiError("FORBIDDEN", `${r.where}.repo: ${r.repo} is not a repository this server may clone (allowed: http(s) URLs under ${mirrors.policy.prefixes.join(", ")})`, undefined, { reason: "REPO_NOT_ALLOWED" });
      }
      holds.push(mirrors.hold(url));
      resolved.push(await mirrors.resolve(url, r.rev, r.where));
    }
  } catch (err) {
    release();
    throw err;
  }
  return { repos: resolved, release };
}

/**
 * The `git` phase: each repository cloned at its commit into its path (as root, like every build
 * step; the path must be absent or empty), then `git.config.user` into the VM's system config.
 * A VM without git (a base that removed it) gets it through apt first.
 */
export async function gitPhase(engine: Engine, mirrors: RepoMirrors | undefined, vmId: string, layer: BuildLayer, resolved: readonly ResolvedRepo[], run: (command: string, timeoutMs: number) => Promise<string>): Promise<string> {
  let log = await run(`command -v git >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q --no-install-recommends git; }`, GIT_PHASE_LIMITS.installMs);
  for (const [i, repo] of resolved.entries()) {
    const dest = layer.repos[i]!.path;
    const inVm = `/tmp/.capsule-repo-${i}.bundle`;
    // Resolved repositories exist only where mirrors do (resolveRepos refuses them otherwise).
    const { file, ref, cached } = await mirrors!.bundle(repo.url, repo.commit);
    try {
      const bytes = await engine.guest.writeFile(vmId, inVm, file.createReadStream({ start: 0, autoClose: false }), { mode: 0o600 });
      log += `${repo.url} at ${repo.commit}${repo.branch ? ` (${repo.branch})` : ""}: bundle of ${bytes} bytes${cached ? " (cached)" : ""}\n`;
    } finally {
      await file.close();
    }
    log += await run(cloneScript(inVm, ref, dest, repo), GIT_PHASE_LIMITS.cloneMs);
  }
  for (const [key, value] of Object.entries(layer.gitUser)) log += await run(`git config --system user.${key} ${shq(value)}`, GIT_PHASE_LIMITS.cloneMs);
  return log;
}

/**
 * A clone of the bundle at `dest` as `git clone` would leave it: the history, the commit checked
 * out (on its branch, tracking `origin/<branch>`, when the rev named one), `origin` the URL.
 */
function cloneScript(bundle: string, ref: string, dest: string, repo: ResolvedRepo): string {
  const d = shq(dest);
  const checkout = repo.branch
    ? [
        `git -C ${d} checkout -q -B ${shq(repo.branch)} ${repo.commit}`,
        `git -C ${d} update-ref ${shq(`refs/remotes/origin/${repo.branch}`)} ${repo.commit}`,
        `git -C ${d} config branch.${shq(repo.branch)}.remote origin`,
        `git -C ${d} config branch.${shq(repo.branch)}.merge ${shq(`refs/heads/${repo.branch}`)}`,
      ].join("\n")
    : `git -C ${d} checkout -q --detach ${repo.commit}`;
  return [
    "set -e",
    `if [ -e ${d} ] && [ -n "$(ls -A ${d})" ]; then echo ${shq(`${dest} exists and is not empty`)} >&2; exit 1; fi`,
    `git init -q ${d}`,
    `git -C ${d} fetch -q ${shq(bundle)} ${shq(ref)}`,
    checkout,
    `git -C ${d} remote add origin ${shq(repo.url)}`,
    `rm -f ${shq(bundle)}`,
    `git -C ${d} log -1 --format='%H %s'`,
  ].join("\n");
}

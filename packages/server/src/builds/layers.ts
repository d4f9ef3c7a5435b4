/**
 * The official client's declarative layers — a `template`, or a `spec` whose `snapshot` field
 * nests the layer it builds on — parsed into {@link BuildLayer}s (innermost first) and hashed.
 * Every field is either built, applied to the VM being created, or refused with a 501 naming it:
 * none is ignored.
 * @module
 */
import crypto from "node:crypto";
import path from "node:path";
import { z } from "zod";
import { AdditionalFile, GroupSpec, SystemdConfig, UserSpec } from "@capsule/contract/schemas";
import { ApiError } from "../errors.js";
import { isValidRev, type ResolvedRepo } from "../repos/mirrors.js";
import { BASE_IMAGE_ENV, DockerfileSyntaxError, DockerfileUnsupportedError, parseDockerfile, type Dockerfile } from "./dockerfile.js";

/** A Debian package name, optionally `=version` (Debian policy §5.6.1 and §5.6.12). */
const APT_PACKAGE_RE = /^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$/;
/** The most packages, files and users one layer may name. */
export const LAYER_LIMITS = { aptDeps: 256, files: 1024, accounts: 64, repos: 16 } as const;
/** Layers one spec may chain through `snapshot`. */
export const MAX_SPEC_DEPTH = 8;

const Sizing = {
  vcpuCount: z.number().positive().max(1024).nullish(),
  memSizeGb: z.number().positive().max(1024).nullish(),
  rootfsSizeGb: z.number().positive().max(16384).nullish(),
};

/** The fields a layer builds (and the sizing of its builder VM). */
const LayerFields = z.object({
  snapshotId: z.string().min(1).nullish(),
  aptDeps: z.array(z.string().regex(APT_PACKAGE_RE, "must be a Debian package name (name or name=version)")).max(LAYER_LIMITS.aptDeps).nullish(),
  additionalFiles: z
    .record(z.string().regex(/^\/[^\0]*$/, "must be an absolute path"), AdditionalFile)
    .refine((f) => Object.keys(f).length <= LAYER_LIMITS.files, `at most ${LAYER_LIMITS.files} files`)
    .nullish(),
  users: z.array(UserSpec).max(LAYER_LIMITS.accounts).nullish(),
  groups: z.array(GroupSpec).max(LAYER_LIMITS.accounts).nullish(),
  systemd: SystemdConfig.nullish(),
  workdir: z.string().regex(/^\/[^\0]*$/, "must be an absolute path").nullish(),
  discriminator: z.string().max(256).nullish(),
  skipCache: z.boolean().nullish(),
  ...Sizing,
});
type LayerFields = z.infer<typeof LayerFields>;

/** A path a repository is cloned into: absolute, normalized, not `/`. */
const RepoPath = z.string().refine((p) => p.startsWith("/") && p !== "/" && !p.includes("\0") && path.posix.normalize(p) === p && !p.endsWith("/"), "must be an absolute, normalized path other than /");
const GitRepo = z
  .object({
    repo: z.string().min(1).max(2048),
    path: RepoPath,
    rev: z.string().refine(isValidRev, "must be a branch, tag, ref or commit id").nullish(),
  })
  .strict();
/** `git.config`: the client sends `{}` or `{user}`; the VM's system git config gets it. */
const GitConfig = z
  .object({
    user: z
      .object({ name: z.string().max(1024).nullish(), email: z.string().max(1024).nullish(), signingkey: z.string().max(1024).nullish() })
      .strict()
      .nullish(),
  })
  .strict();
const GitRepos = z.array(GitRepo).max(LAYER_LIMITS.repos).nullish();
const Git = z.object({ config: GitConfig.nullish(), repos: GitRepos }).strict();

/** One repository to clone: `where` names its field in errors (`template.git.repos[0]`). */
export interface RepoRequest {
  repo: string;
  path: string;
  rev?: string;
  where: string;
}

/** Fields of the VM being created, allowed only where a create sends them (not in an ensure). */
const VM_FIELDS = ["idleTimeoutSeconds", "waitForReadySignal", "readySignalTimeoutSeconds", "name"] as const;
const BUILD_FIELD_NAMES = new Set(Object.keys(LayerFields.shape));

/** One layer to build on top of `snapshotId` (or the layer under it, or the base image). */
export interface BuildLayer {
  snapshotId?: string;
  aptDeps: string[];
  files: Record<string, AdditionalFile>;
  users: UserSpec[];
  groups: GroupSpec[];
  services: NonNullable<SystemdConfig["services"]>;
  patchedServices: NonNullable<SystemdConfig["patchedServices"]>;
  workdir?: string;
  /** `git.repos` (and the client's deprecated `gitRepos`), before the host resolves them. */
  repos: RepoRequest[];
  /** `git.config.user`, written to the VM's system git config. */
  gitUser: { name?: string; email?: string; signingkey?: string };
  /** `baseImage.dockerfileContent`, parsed: the base image it names and its steps, run first. */
  dockerfile?: Dockerfile;
  discriminator?: string;
  skipCache: boolean;
  sizing: { vcpuCount?: number; memSizeGb?: number; rootfsSizeGb?: number };
}

/** VM settings a create's inline template or spec carries beside its layers. */
export interface VmSettings {
  idleTimeoutSeconds?: number | null;
  name?: string | null;
}

function unsupported(field: string, why: string): ApiError {
  return new ApiError("BAD_REQUEST", `${field} is not supported by Capsule: ${why}`, 501, { unsupported: true });
}

/** Why each Freestyle field Capsule does not build is refused. */
const REFUSED: Record<string, string> = {
  ports: "VM ports are reached through the preview proxy, not configured per snapshot",
  persistence: "snapshots and VMs are always persistent",
  template: "nested templates are ensured by the client, one POST per layer",
};

/**
 * Checks one layer object: every key is a build field, a VM field where `vmFields` allows it, or
 * a 501 naming it. `where` prefixes field names in messages (`spec.snapshot.aptDeps`).
 */
function parseLayer(raw: Record<string, unknown>, where: string, vmFields: boolean): { layer: BuildLayer; vm: VmSettings } {
  for (const [key, value] of Object.entries(raw)) {
    if (value === undefined || value === null || key === "snapshot") continue;
    if (key === "git" || key === "gitRepos" || key === "baseImage") continue;
    if (BUILD_FIELD_NAMES.has(key)) continue;
    if (vmFields && (VM_FIELDS as readonly string[]).includes(key)) continue;
    throw unsupported(`${where}.${key}`, REFUSED[key] ?? ((VM_FIELDS as readonly string[]).includes(key) ? "a snapshot carries no VM settings; set it on the create" : "unknown field"));
  }
  const { git, gitRepos, snapshot: _snapshot, baseImage, ...fields } = raw;
  const picked = Object.fromEntries(Object.entries(fields).filter(([k]) => BUILD_FIELD_NAMES.has(k)));
  const parsed = LayerFields.safeParse(picked);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ApiError("VALIDATION_ERROR", `${where}.${issue?.path.join(".") ?? ""}: ${issue?.message ?? "invalid"}`);
  }
  const vm: VmSettings = {};
  if (vmFields) {
    if (raw.idleTimeoutSeconds !== undefined) vm.idleTimeoutSeconds = raw.idleTimeoutSeconds as number | null;
    if (typeof raw.name === "string") vm.name = raw.name;
  }
  const dockerfile = baseImage == null ? undefined : parseBaseImage(baseImage, `${where}.baseImage`);
  if (dockerfile && parsed.data.snapshotId) throw new ApiError("VALIDATION_ERROR", `${where}: a layer builds on a baseImage or a snapshotId, not both`);
  return { layer: { ...toLayer(parsed.data), ...parseGit(git, gitRepos, where), ...(dockerfile ? { dockerfile } : {}) }, vm };
}

/** `value` as `schema` parses it, or a VALIDATION_ERROR naming `field` and the first issue's path. */
function parseField<T extends z.ZodType>(schema: T, value: unknown, field: string): z.infer<T> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new ApiError("VALIDATION_ERROR", `${field}.${issue?.path.join(".") ?? ""}: ${issue?.message ?? "invalid"}`);
}

/** `git` (`{config, repos}`) and the deprecated root-level `gitRepos`, which the client sends as the same list. */
function parseGit(git: unknown, gitRepos: unknown, where: string): Pick<BuildLayer, "repos" | "gitUser"> {
  const parsed = parseField(Git, git ?? {}, `${where}.git`);
  const legacy = parseField(GitRepos, gitRepos, `${where}.gitRepos`);
  const list = [...(parsed.repos ?? []).map((r, i) => ({ r, where: `${where}.git.repos[${i}]` })), ...(legacy ?? []).map((r, i) => ({ r, where: `${where}.gitRepos[${i}]` }))];
  if (list.length > LAYER_LIMITS.repos) throw new ApiError("VALIDATION_ERROR", `${where}.git.repos: at most ${LAYER_LIMITS.repos} repositories`);
  const paths = new Set<string>();
  for (const { r, where: w } of list) {
    if ([...paths].some((p) => p === r.path || r.path.startsWith(`${p}/`) || p.startsWith(`${r.path}/`))) throw new ApiError("VALIDATION_ERROR", `${w}.path: ${r.path} overlaps another repository's path`);
    paths.add(r.path);
  }
  const user = parsed.config?.user;
  const gitUser = Object.fromEntries(Object.entries(user ?? {}).filter(([, v]) => typeof v === "string")) as BuildLayer["gitUser"];
  return { repos: list.map(({ r, where: w }) => ({ repo: r.repo, path: r.path, ...(r.rev ? { rev: r.rev } : {}), where: w })), gitUser };
}

/** `{dockerfileContent}`: a syntax error is a VALIDATION_ERROR, an instruction outside the subset a 501 naming it. */
function parseBaseImage(value: unknown, where: string): Dockerfile {
  const content = (value as { dockerfileContent?: unknown }).dockerfileContent;
  if (typeof value !== "object" || typeof content !== "string" || Object.keys(value as object).length !== 1) {
    throw new ApiError("VALIDATION_ERROR", `${where} must be {dockerfileContent: string}`);
  }
  try {
    return parseDockerfile(content, BASE_IMAGE_ENV);
  } catch (err) {
    if (err instanceof DockerfileUnsupportedError) throw new ApiError("BAD_REQUEST", `${where}.dockerfileContent: ${err.message}`, 501, { unsupported: true });
    if (err instanceof DockerfileSyntaxError) throw new ApiError("VALIDATION_ERROR", `${where}.dockerfileContent: ${err.message}`);
    throw err;
  }
}

function toLayer(f: LayerFields): BuildLayer {
  return {
    ...(f.snapshotId ? { snapshotId: f.snapshotId } : {}),
    aptDeps: f.aptDeps ?? [],
    files: f.additionalFiles ?? {},
    users: f.users ?? [],
    groups: f.groups ?? [],
    repos: [],
    gitUser: {},
    services: f.systemd?.services ?? [],
    patchedServices: f.systemd?.patchedServices ?? [],
    ...(f.workdir ? { workdir: f.workdir } : {}),
    ...(f.discriminator ? { discriminator: f.discriminator } : {}),
    skipCache: f.skipCache ?? false,
    sizing: {
      ...(f.vcpuCount != null ? { vcpuCount: f.vcpuCount } : {}),
      ...(f.memSizeGb != null ? { memSizeGb: f.memSizeGb } : {}),
      ...(f.rootfsSizeGb != null ? { rootfsSizeGb: f.rootfsSizeGb } : {}),
    },
  };
}

/** True when the layer changes the disk: an empty one (only a base and sizing) needs no build. */
export function buildsAnything(l: BuildLayer): boolean {
  return l.aptDeps.length + Object.keys(l.files).length + l.users.length + l.groups.length + l.services.length + l.patchedServices.length + l.repos.length + Object.keys(l.gitUser).length > 0 || l.workdir !== undefined || l.dockerfile !== undefined;
}

/**
 * A spec's layers, innermost first. Only the innermost may name a `snapshotId` (the client's own
 * rule: one base source per chain). `vmFields`: the outermost layer is a create's, whose VM
 * settings apply to the VM.
 */
export function specLayers(spec: Record<string, unknown>, vmFields: boolean): { layers: BuildLayer[]; vm: VmSettings } {
  const chain: Array<{ raw: Record<string, unknown>; where: string }> = [];
  let node: unknown = spec;
  let where = "spec";
  while (node !== undefined && node !== null) {
    if (typeof node !== "object" || Array.isArray(node)) throw new ApiError("VALIDATION_ERROR", `${where} must be an object`);
    if (chain.length === MAX_SPEC_DEPTH) throw new ApiError("VALIDATION_ERROR", `a spec may chain at most ${MAX_SPEC_DEPTH} layers through snapshot`);
    chain.push({ raw: node as Record<string, unknown>, where });
    node = (node as Record<string, unknown>).snapshot;
    where = `${where}.snapshot`;
  }
  const parsed = chain.map((c, i) => parseLayer(c.raw, c.where, vmFields && i === 0));
  parsed.forEach((p, i) => {
    for (const [field, set] of [["snapshotId", p.layer.snapshotId !== undefined], ["baseImage", p.layer.dockerfile !== undefined]] as const) {
      if (set && i < parsed.length - 1) {
        throw new ApiError("VALIDATION_ERROR", `${chain[i]!.where}.${field}: only the innermost layer may name a base (this one builds on ${chain[i + 1]!.where})`);
      }
    }
  });
  return { layers: parsed.map((p) => p.layer).reverse(), vm: parsed[0]?.vm ?? {} };
}

/** A template is one layer. */
export function templateLayer(template: Record<string, unknown>, vmFields: boolean): { layer: BuildLayer; vm: VmSettings } {
  return parseLayer(template, "template", vmFields);
}

/**
 * The layer's content hash: the canonical JSON of what it builds, on which base, with which
 * discriminator. Sizing and skipCache are left out (they change how it is built, not what).
 * Repositories count by URL, path and the commit the host resolved their rev to (`resolved`, in
 * the order of `l.repos`): a new commit on a branch is a new layer.
 */
export function layerHash(l: BuildLayer, base: string | undefined, resolved: readonly ResolvedRepo[] = []): string {
  if (resolved.length !== l.repos.length) throw new Error("layerHash: every repository needs its resolved commit");
  const content = {
    v: 1,
    base: base ?? null,
    discriminator: l.discriminator ?? null,
    aptDeps: l.aptDeps,
    files: l.files,
    users: l.users,
    groups: l.groups,
    services: l.services,
    patchedServices: l.patchedServices,
    workdir: l.workdir ?? null,
    // Left out when absent (canonicalJson drops undefined): the hashes of earlier layers stay.
    // Line numbers are not content: a comment added above does not rebuild.
    dockerfile: l.dockerfile && { suite: l.dockerfile.suite, steps: l.dockerfile.steps.map(({ line: _line, ...step }) => step) },
    repos: l.repos.length > 0 ? l.repos.map((r, i) => ({ url: resolved[i]!.url, path: r.path, commit: resolved[i]!.commit })) : undefined,
    gitUser: Object.keys(l.gitUser).length > 0 ? l.gitUser : undefined,
  };
  return crypto.createHash("sha256").update(canonicalJson(content)).digest("hex");
}

/** JSON with object keys sorted at every level, so equal content hashes equal. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const entries = Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

/**
 * `VmSpec`: a declarative VM environment, built the way the official freestyle 0.1.63 client's
 * `VmSpec` is (`new VmSpec().aptDeps("jq").runCommands("...").snapshot()`), and serialized to the
 * same wire `spec`, so the same spec made with either client is the same cached snapshot. Each
 * `snapshot()` call closes a layer: the server builds and caches every layer on its own, innermost
 * first (docs/builds.md).
 * @module
 */
import type { AdditionalFile, GroupSpec, SystemdPatchedService, SystemdServiceSpec, UserSpec } from "@capsule/contract/schemas";

/** The official client's names for the oneshots `runCommands` and `waitFor` generate. */
export const RUN_COMMAND_PREFIX = "freestyle-run-command";
export const WAIT_FOR_PREFIX = "freestyle-wait-for";
/** Where a service's `bash` script is written (the official client's path). */
const SCRIPT_DIR = "/opt/freestyle/scripts";
/** `waitFor`'s default pause between two tries, seconds (the official client's). */
const WAIT_FOR_INTERVAL_SECONDS = 2;

/** A service as `systemdService()` takes it: `exec` command lines, or a `bash` script written into the VM. */
export type VmServiceInput = Omit<SystemdServiceSpec, "exec"> & { exec?: string[]; bash?: string };

/** `waitFor()`'s options: the oneshot's fields, and how long to sleep between tries. */
export type VmWaitForOptions = Partial<Omit<VmServiceInput, "exec" | "bash" | "mode">> & { intervalSeconds?: number };

/** One layer on the wire: what `POST /v1/vms/snapshots` takes as `spec` (and `POST /v1/vms` as `spec`). */
export interface VmSpecLayer {
  snapshotId?: string;
  aptDeps?: string[];
  additionalFiles?: Record<string, AdditionalFile>;
  users?: UserSpec[];
  groups?: GroupSpec[];
  systemd?: { services?: SystemdServiceSpec[]; patchedServices?: SystemdPatchedService[] };
  workdir?: string;
  discriminator?: string;
  skipCache?: boolean;
  vcpuCount?: number;
  memSizeGb?: number;
  rootfsSizeGb?: number;
  /** Applied to the VM, on a create's outermost layer only. */
  idleTimeoutSeconds?: number | null;
  /** Repositories cloned into the VM at build time (the operator allows their URLs: docs/builds.md). */
  git?: { config: { user?: GitUser }; repos: GitRepoSpec[] };
  /** The layer this one builds on. */
  snapshot?: VmSpecLayer;
}

/** One repository of a layer: cloned at `path`, at `rev` (a branch, tag, ref or commit; default the remote's HEAD). */
export interface GitRepoSpec {
  repo: string;
  path: string;
  rev?: string;
}

/** `git.config.user`: written to the VM's system git config. */
export interface GitUser {
  name?: string;
  email?: string;
  signingkey?: string;
}

/** A layer as the builder holds it: services still in their input form (`bash` not yet a file). */
type DraftLayer = Omit<VmSpecLayer, "systemd" | "snapshot"> & { services?: VmServiceInput[]; patchedServices?: SystemdPatchedService[] };

/** A spec as a JSON file may give it (`capsule snapshot build --spec`): the wire layer, `bash` services, and `runCommands`. */
export type VmSpecJson = Omit<VmSpecLayer, "systemd" | "snapshot"> & {
  systemd?: { services?: VmServiceInput[]; patchedServices?: SystemdPatchedService[] };
  runCommands?: string[];
  snapshot?: VmSpecJson;
};

export class VmSpec {
  #layer: DraftLayer = {};
  #inner: VmSpec | undefined;

  /** A spec from its JSON form (the wire shape, plus `bash` services and `runCommands`), innermost layer first built. */
  static fromJSON(json: VmSpecJson): VmSpec {
    const { snapshot, systemd, runCommands, ...fields } = json;
    const spec = new VmSpec();
    if (snapshot) {
      spec.#inner = VmSpec.fromJSON(snapshot);
    }
    spec.#layer = { ...fields };
    for (const s of systemd?.services ?? []) spec.systemdService(s);
    if (systemd?.patchedServices) spec.#layer.patchedServices = [...systemd.patchedServices];
    if (runCommands) spec.runCommands(...runCommands);
    return spec;
  }

  /** Closes the layer so far: it becomes the snapshot this spec builds on, and a new empty layer begins. */
  snapshot(): this {
    const inner = new VmSpec();
    inner.#layer = this.#layer;
    inner.#inner = this.#inner;
    this.#layer = {};
    this.#inner = inner;
    return this;
  }

  /** Build on this snapshot instead of the base image (the innermost layer only). */
  snapshotId(id: string): this {
    this.#layer.snapshotId = id;
    return this;
  }

  /** Debian packages installed with apt-get (`name` or `name=version`). */
  aptDeps(...deps: string[]): this {
    this.#layer.aptDeps = [...(this.#layer.aptDeps ?? []), ...deps];
    return this;
  }

  /** Files by absolute path (later calls add to and override earlier ones). */
  additionalFiles(files: Record<string, AdditionalFile>): this {
    this.#layer.additionalFiles = { ...this.#layer.additionalFiles, ...files };
    return this;
  }

  users(users: UserSpec[]): this {
    this.#layer.users = [...(this.#layer.users ?? []), ...users];
    return this;
  }

  groups(groups: GroupSpec[]): this {
    this.#layer.groups = [...(this.#layer.groups ?? []), ...groups];
    return this;
  }

  /** A directory created by the build. */
  workdir(path: string): this {
    this.#layer.workdir = path;
    return this;
  }

  /** Another snapshot for the same content (the cache key includes it). */
  discriminator(value: string): this {
    this.#layer.discriminator = value;
    return this;
  }

  /** Build even when a cached snapshot exists. */
  skipCache(): this {
    this.#layer.skipCache = true;
    return this;
  }

  vcpuCount(n: number): this {
    this.#layer.vcpuCount = n;
    return this;
  }

  memSizeGb(n: number): this {
    this.#layer.memSizeGb = n;
    return this;
  }

  rootfsSizeGb(n: number): this {
    this.#layer.rootfsSizeGb = n;
    return this;
  }

  /** The VM's idle timeout (a create's outermost layer only; an ensure refuses it). */
  idleTimeoutSeconds(seconds: number | null): this {
    this.#layer.idleTimeoutSeconds = seconds;
    return this;
  }

  /** Commands run once at build time, in order, each after the one before succeeded (oneshots that delete themselves). */
  runCommands(...commands: string[]): this {
    const services = this.#services();
    let { maxIndex, last } = generated(services, RUN_COMMAND_PREFIX, this.#innerNames());
    for (const command of commands.map((c) => c.trim()).filter((c) => c.length > 0)) {
      const name = `${RUN_COMMAND_PREFIX}-${++maxIndex}`;
      services.push({ name, mode: "oneshot", deleteAfterSuccess: true, bash: command, ...(last ? { after: [last], requires: [last] } : {}), workdir: "/root", env: { HOME: "/root" } });
      last = name;
    }
    return this;
  }

  /** A oneshot that retries `command` every `intervalSeconds` until it succeeds; the build waits for it. */
  waitFor(command: string, options: VmWaitForOptions = {}): this {
    const trimmed = command.trim();
    if (!trimmed) throw new TypeError("VmSpec.waitFor needs a non-empty command");
    const { intervalSeconds = WAIT_FOR_INTERVAL_SECONDS, name, after, requires, timeoutSec, ...rest } = options;
    if (!Number.isFinite(intervalSeconds) || intervalSeconds <= 0) throw new TypeError("VmSpec.waitFor: intervalSeconds must be above 0");
    const services = this.#services();
    const { maxIndex, last } = generated(services, WAIT_FOR_PREFIX, this.#innerNames());
    const body = trimmed.split("\n").map((l) => `    ${l}`).join("\n");
    services.push({
      ...rest,
      name: name ?? `${WAIT_FOR_PREFIX}-${maxIndex + 1}`,
      mode: "oneshot",
      timeoutSec: timeoutSec ?? 0,
      after: withDependency(after, last),
      requires: withDependency(requires, last),
      bash: ["while true; do", "  if (", body, "  ); then", "    exit 0", "  fi", `  sleep ${intervalSeconds}`, "done"].join("\n"),
    });
    return this;
  }

  /** Clones `repo` into `path` when the layer is built (as the official client's `repo(url, path)`, plus an optional `rev`). */
  repo(repo: string, path: string, rev?: string): this {
    const git = this.#git();
    git.repos.push({ repo, path, ...(rev !== undefined ? { rev } : {}) });
    return this;
  }

  /** The author (and signing key) the VM's git uses: its system git config. */
  gitUser(user: GitUser): this {
    this.#git().config.user = { ...user };
    return this;
  }

  /** A service installed at build time (enabled ones are started); it runs after this layer's `runCommands`. */
  systemdService(service: VmServiceInput): this {
    const services = this.#services();
    const { last } = generated(services, RUN_COMMAND_PREFIX, []);
    services.push({ ...service, after: withDependency(service.after, last), requires: withDependency(service.requires, last) });
    return this;
  }

  /** The wire spec: this layer, with the ones it builds on nested under `snapshot`. */
  toJSON(): VmSpecLayer {
    const layer = serializeLayer(this.#layer);
    const inner = this.#inner ? this.#inner.#chain() : undefined;
    return inner ? { ...layer, snapshot: inner } : layer;
  }

  /** The inner chain as the official client sends it: empty layers left out. */
  #chain(): VmSpecLayer | undefined {
    const layer = this.toJSON();
    return Object.keys(layer).length === 0 ? undefined : layer;
  }

  /** This layer's `git`, in the official client's shape (`config` always present). */
  #git(): NonNullable<VmSpecLayer["git"]> {
    return (this.#layer.git ??= { config: {}, repos: [] });
  }

  #services(): VmServiceInput[] {
    return (this.#layer.services ??= []);
  }

  /** The service names of this layer and the ones under it (a new oneshot's number follows theirs). */
  #names(): string[] {
    return [...(this.#layer.services ?? []).map((s) => s.name), ...this.#innerNames()];
  }

  #innerNames(): string[] {
    return this.#inner ? this.#inner.#names() : [];
  }
}

/**
 * The highest number `prefix` used in this layer and the inner ones, and this layer's last
 * generated oneshot (of either prefix), which the next one runs after.
 */
function generated(services: VmServiceInput[], prefix: string, innerNames: string[]): { maxIndex: number; last: string | undefined } {
  let maxIndex = 0;
  let last: string | undefined;
  const index = (name: string, p: string) => new RegExp(`^${p}-(\\d+)$`).exec(name)?.[1];
  for (const s of services) {
    for (const p of [RUN_COMMAND_PREFIX, WAIT_FOR_PREFIX]) {
      const n = index(s.name, p);
      if (n === undefined) continue;
      if (p === prefix) maxIndex = Math.max(maxIndex, Number(n));
      last = s.name;
      break;
    }
  }
  for (const name of innerNames) {
    const n = index(name, prefix);
    if (n !== undefined) maxIndex = Math.max(maxIndex, Number(n));
  }
  return { maxIndex, last };
}

function withDependency(deps: string[] | null | undefined, dep: string | undefined): string[] | undefined {
  if (!dep) return deps ?? undefined;
  return deps?.includes(dep) ? [...deps] : [...(deps ?? []), dep];
}

/** Unit names as systemd spells them: a bare name is `<name>.service`. */
function units(names: string[] | null | undefined): string[] | undefined {
  return names?.map((n) => (n.includes(".") ? n : `${n}.service`));
}

/** One layer on the wire: unit names completed, each `bash` script turned into a file and its `exec`. */
function serializeLayer(draft: DraftLayer): VmSpecLayer {
  const { services, patchedServices, git, ...fields } = draft;
  const out: VmSpecLayer = { ...fields, ...(git ? { git: { config: { ...git.config }, repos: git.repos.map((r) => ({ ...r })) } } : {}) };
  if (services || patchedServices) {
    const files: Record<string, AdditionalFile> = { ...out.additionalFiles };
    out.systemd = {};
    if (services) {
      out.systemd.services = services.map(({ bash, ...s }) => {
        const spec = { ...s, after: units(s.after), requires: units(s.requires), wantedBy: units(s.wantedBy), mode: s.mode ?? "service" };
        if (bash === undefined) {
          if (!s.exec?.length) throw new TypeError(`service ${JSON.stringify(s.name)} needs exec or bash`);
          return { ...spec, exec: s.exec };
        }
        const path = `${SCRIPT_DIR}/${s.name}.sh`;
        files[path] = { content: bash.startsWith("#!/") ? bash : `#!/bin/bash\n${bash}`, encoding: "utf-8" };
        return { ...spec, exec: [`/bin/bash ${path}`] };
      });
      out.additionalFiles = files;
    }
    if (patchedServices) out.systemd.patchedServices = patchedServices.map((s) => ({ ...s, after: units(s.after), requires: units(s.requires), wantedBy: units(s.wantedBy) }));
  }
  return out;
}

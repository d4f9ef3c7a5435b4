/**
 * Declarative snapshot builds. A layer is built in a builder VM booted from its base (a snapshot,
 * or the base image): groups and users, files, apt packages (through the host's package cache, so
 * a VM without egress can install), services installed and started through the guest supervisor
 * (the client's runCommands and waitFor are oneshot services), the workdir; repositories the
 * operator allows are resolved to commits on the host and cloned from a bundle (git-phase.ts);
 * then the VM is
 * snapshotted and deleted. The same layer on the same base is the same snapshot: a succeeded
 * build's snapshot is reused by hash, and concurrent ensures of one hash share one build.
 *
 * Nothing half-made survives: the build's row is written before its builder VM exists (the VM's
 * owner label names it), the snapshot has a create intent like any other, and its row lands in
 * one transaction with the build's success. A failed build deletes its builder; a server killed
 * mid-build deletes it at the next start ({@link Builds.recover}).
 * @module
 */
import fs from "node:fs/promises";
import path from "node:path";
import { StringDecoder } from "node:string_decoder";
import { DEFAULT_ENV_FILE_IN_VM, DEFAULT_WORKDIR_FILE_IN_VM, serviceNameOf, type Engine, type ServiceSpec, type ServiceStatus } from "@capsule/engine";
import type { Logger } from "pino";
import type { BuildDiagnostics } from "@capsule/contract/errors";
import type { CreateVmRequest } from "@capsule/contract/schemas";
import { shq } from "@capsule/contract/shell";
import { ApiError, toApiError } from "../errors.js";
import type { Account } from "../keys.js";
import type { Quotas } from "../quotas.js";
import { patchServiceSpec, serviceId, toServiceSpec } from "../services.js";
import { groupadd, ownerLabel, sizingToLimits, useradd } from "../vms/provisioning.js";
import type { Rows } from "../vms/rows.js";
import { lastLine } from "../repos/git.js";
import type { RepoMirrors, ResolvedRepo } from "../repos/mirrors.js";
import { gitPhase, resolveRepos } from "./git-phase.js";
import { buildsAnything, layerHash, specLayers, templateLayer, type BuildLayer, type VmSettings } from "./layers.js";
import type { Dockerfile } from "./dockerfile.js";
import { buildOwner, isBuildOwner } from "./owner.js";
import { PhaseLog } from "./phase-log.js";
import type { BuildRows } from "./rows.js";

/** Time limits of the build's steps. */
export const BUILD_LIMITS = {
  /** One groupadd/useradd or mkdir. */
  commandMs: 60_000,
  /** apt-get update + install. */
  aptMs: 15 * 60_000,
  /** One Dockerfile RUN. */
  dockerRunMs: 15 * 60_000,
  /** From the services' start until no oneshot is still running (runCommands, waitFor). */
  servicesMs: 15 * 60_000,
  /** How often the services' states are read while oneshots run. */
  servicesPollMs: 500,
  /** Log lines of each failed service in the error's diagnostics. */
  failedLogLines: 200,
  /** ... and in its message. */
  messageLogLines: 10,
} as const;

/** The end of a command's stdout and stderr kept for its error message's last line. */
const ERROR_TAIL_CHARS = 4096;

/** The phases a layer runs, in order; those with nothing to do are left out. */
function plannedPhases(l: BuildLayer): string[] {
  return [
    "boot",
    ...(l.dockerfile ? ["dockerfile"] : []),
    ...(l.groups.length + l.users.length > 0 ? ["users"] : []),
    ...(l.repos.length + Object.keys(l.gitUser).length > 0 ? ["git"] : []),
    ...(Object.keys(l.files).length > 0 ? ["files"] : []),
    ...(l.aptDeps.length > 0 ? ["aptDeps"] : []),
    ...(l.services.length + l.patchedServices.length > 0 ? ["systemd"] : []),
    ...(l.workdir !== undefined ? ["workdir"] : []),
    "snapshot",
  ];
}

/** A phase that failed, with what it printed and, for services, their states. */
class PhaseFailure extends Error {
  constructor(
    message: string,
    readonly log: string,
    readonly diagnostics?: BuildDiagnostics,
  ) {
    super(message);
  }
}

export interface EnsureResult {
  snapshotId: string;
  buildId: string;
  templateHash: string;
  cached: boolean;
}

export class Builds {
  /** Builds in flight by account and hash: a second ensure of one hash waits for the first. */
  readonly #inflight = new Map<string, Promise<EnsureResult>>();
  /** The running phase's live log, by builder VM. */
  readonly #live = new Map<string, PhaseLog>();

  constructor(
    private readonly engine: Engine,
    private readonly rows: Rows,
    readonly buildRows: BuildRows,
    private readonly quotas: Quotas,
    private readonly log: Logger,
    /** `repos`: the mirrors, when the operator allows repositories (else `git.repos` is a 501). */
    private readonly opts: { egress: "none" | "internet"; repos?: RepoMirrors },
  ) {}

  /** `POST /v1/vms/snapshots`: the snapshot of a template or a spec, built or from the cache. */
  async ensure(account: Account, body: { name?: string | null | undefined; template?: Record<string, unknown> | null | undefined; spec?: Record<string, unknown> | null | undefined }): Promise<EnsureResult> {
    if (body.spec && body.template) throw new ApiError("VALIDATION_ERROR", "send either template or spec, not both");
    const layers = body.spec ? specLayers(body.spec, false).layers : body.template ? [templateLayer(body.template, false).layer] : undefined;
    if (!layers) throw new ApiError("VALIDATION_ERROR", "snapshots.ensure needs a template or a spec");
    return this.#ensureChain(account, layers, body.name ?? null);
  }

  /**
   * A create with an inline `spec`, or a `template` with layer fields: the layers are ensured and
   * the create boots from their snapshot. Answers the body to create with (no spec, the template
   * down to its sizing) and the build, if one made or cached the snapshot.
   */
  async forCreate(account: Account, body: CreateVmRequest): Promise<{ body: CreateVmRequest; buildId?: string }> {
    const { git: rootGit, gitRepos: rootGitRepos, ...withoutGit } = body as CreateVmRequest & { spec?: unknown; template?: Record<string, unknown> };
    // The create's own `git`/`gitRepos` (`vms.create({gitRepos})`) belong to the layer the VM boots from: the outermost.
    const git = { ...(rootGit != null ? { git: rootGit } : {}), ...(rootGitRepos != null ? { gitRepos: rootGitRepos } : {}) };
    const raw: typeof withoutGit = Object.keys(git).length === 0 ? withoutGit : withRootGit(withoutGit, git);
    let layers: BuildLayer[];
    let vm: VmSettings = {};
    if (raw.spec !== undefined && raw.spec !== null) {
      if (typeof raw.spec !== "object" || Array.isArray(raw.spec)) throw new ApiError("CREATE_VM_BAD_REQUEST", "spec must be an object");
      if (raw.template) throw new ApiError("CREATE_VM_BAD_REQUEST", "send either template or spec, not both");
      ({ layers, vm } = specLayers(raw.spec as Record<string, unknown>, true));
    } else if (raw.template) {
      const parsed = templateLayer(raw.template, true);
      ({ vm } = parsed);
      layers = [parsed.layer];
    } else {
      return { body: raw };
    }
    if (raw.snapshotId && layers[0]?.snapshotId === undefined) layers[0] = { ...layers[0]!, snapshotId: raw.snapshotId };
    const outer = layers[layers.length - 1]!;
    const { spec: _spec, template: _template, ...rest } = raw;
    const next: CreateVmRequest = {
      ...rest,
      ...(vm.name ? { name: vm.name } : {}),
      ...(vm.idleTimeoutSeconds !== undefined && rest.idleTimeoutSeconds === undefined ? { idleTimeoutSeconds: vm.idleTimeoutSeconds } : {}),
      template: { ...outer.sizing },
    };
    // A template that only names a base and a size builds nothing: boot from the base as before.
    if (layers.length === 1 && !buildsAnything(outer)) return { body: { ...next, snapshotId: outer.snapshotId ?? null } };
    const r = await this.#ensureChain(account, layers, null, "CREATE_VM_BAD_REQUEST");
    return { body: { ...next, snapshotId: r.snapshotId }, buildId: r.buildId };
  }

  async #ensureChain(account: Account, layers: BuildLayer[], name: string | null, badRequest: "VALIDATION_ERROR" | "CREATE_VM_BAD_REQUEST" = "VALIDATION_ERROR"): Promise<EnsureResult> {
    let base: string | undefined;
    let result: EnsureResult | undefined;
    for (const [i, layer] of layers.entries()) {
      // A layer with nothing to build on top of a built one (the outer layer of spec.snapshot()) is that snapshot.
      if (result && !buildsAnything(layer)) continue;
      base = layer.snapshotId ?? base;
      if (base !== undefined) this.rows.ownedSnapshot(account, base);
      if (layer.dockerfile) await this.#assertBaseImage(layer.dockerfile.suite);
      for (const s of layer.services) toServiceSpec(s, undefined); // refused before any VM exists
      const { repos, release } = await resolveRepos(this.opts.repos, layer);
      try {
        result = await this.#ensureLayer(account, layer, base, repos, i === layers.length - 1 ? name : null).catch((err: unknown) => {
          throw toApiError(err, badRequest);
        });
      } finally {
        release();
      }
      base = result.snapshotId;
    }
    return result!;
  }

  #ensureLayer(account: Account, layer: BuildLayer, base: string | undefined, repos: ResolvedRepo[], name: string | null): Promise<EnsureResult> {
    const templateHash = layerHash(layer, base, repos);
    if (!layer.skipCache) {
      const hit = this.buildRows.cached(account.id, templateHash);
      if (hit) return Promise.resolve({ ...hit, templateHash, cached: true });
    }
    const key = `${account.id}:${templateHash}`;
    const running = this.#inflight.get(key);
    if (running) return running;
    const build = this.#build(account, layer, base, repos, templateHash, name).finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, build);
    return build;
  }

  async #build(account: Account, layer: BuildLayer, base: string | undefined, repos: ResolvedRepo[], templateHash: string, name: string | null): Promise<EnsureResult> {
    const phases = plannedPhases(layer);
    const limits = this.quotas.fullLimits(sizingToLimits(layer.sizing));
    const buildId = this.buildRows.insert(account.id, templateHash, base, phases);
    this.log.info({ buildId, account: account.name, templateHash, base: base ?? null, phases }, "build started");
    let seq = 0;
    let vmId: string | undefined;
    /** Runs one phase: its row, its log, and its failure as a PhaseFailure naming it. */
    const phase = async <T>(phaseName: string, run: () => Promise<{ log: string; value: T }>, snapshotOf?: (v: T) => string): Promise<T> => {
      const phaseSeq = seq++;
      const end = this.buildRows.beginPhase(buildId, phaseSeq, phaseName);
      // What the phase's commands print reaches its row while it runs (#run, #services).
      const live = new PhaseLog((log) => this.buildRows.phaseProgress(buildId, phaseSeq, log));
      if (vmId !== undefined) this.#live.set(vmId, live);
      try {
        const { log, value } = await run();
        live.close();
        end("succeeded", log, snapshotOf?.(value));
        return value;
      } catch (err) {
        live.close();
        const failure = err instanceof PhaseFailure ? err : new PhaseFailure(err instanceof Error ? err.message : String(err), "");
        end("failed", failure.log || failure.message);
        throw Object.assign(failure, { phase: phaseName, cause: err });
      } finally {
        if (vmId !== undefined) this.#live.delete(vmId);
      }
    };
    try {
      vmId = await phase("boot", async () => {
        const ticket = await this.quotas.admitVms(account, limits, 1, false);
        try {
          const vm = await this.engine.createVm({ ...(base !== undefined ? { snapshotId: base } : {}), ...(layer.dockerfile ? { image: layer.dockerfile.suite } : {}), limits, egress: this.opts.egress, owner: buildOwner(buildId), name: `build ${buildId}` });
          return { log: `builder VM ${vm.id} from ${base ?? "the base image"}`, value: vm.id };
        } finally {
          ticket.release();
        }
      });
      const id = vmId;
      if (layer.dockerfile) await phase("dockerfile", () => this.#dockerfile(id, layer.dockerfile!));
      if (phases.includes("users")) await phase("users", () => this.#users(id, layer));
      if (phases.includes("git")) await phase("git", async () => ({ log: await gitPhase(this.engine, this.opts.repos, id, layer, repos, async (command, ms) => (await this.#run(id, command, ms)).log), value: undefined }));
      if (phases.includes("files")) await phase("files", () => this.#files(id, layer));
      if (phases.includes("aptDeps")) await phase("aptDeps", () => this.#apt(id, layer.aptDeps));
      if (phases.includes("systemd")) await phase("systemd", () => this.#services(id, layer));
      if (phases.includes("workdir")) await phase("workdir", () => this.#workdir(id, layer.workdir!));
      const snapshotId = await phase("snapshot", () => this.#snapshot(account, id, buildId, name), (s) => s);
      this.log.info({ buildId, snapshotId }, "build succeeded");
      return { snapshotId, buildId, templateHash, cached: false };
    } catch (err) {
      const failure = err as PhaseFailure & { phase?: string };
      const apiCause = failure.cause instanceof ApiError && failure.cause.code !== "INTERNAL_ERROR" ? failure.cause : undefined;
      const reason = `${failure.phase ?? "build"}: ${failure.message}`;
      this.buildRows.fail(buildId, reason);
      this.log.warn({ buildId, reason }, "build failed");
      // Admission refusals (quotas, host capacity) keep their own codes: the client knows them.
      if (apiCause && failure.phase === "boot") throw apiCause;
      throw new ApiError("VM_SETUP_FAILED", `build ${buildId} failed in phase ${reason}`, undefined, {
        reason: `phase ${failure.phase ?? "build"}`,
        buildId,
        snapshotId: base ?? null,
        diagnostics: failure.diagnostics ?? { serviceStates: [], failedServiceLogs: [] },
      });
    } finally {
      if (vmId !== undefined) await this.engine.deleteVm(vmId).catch((err: unknown) => this.log.error({ err, buildId, vmId }, "could not delete a builder VM"));
    }
  }

  /**
   * One command in the builder VM, its output streamed into the running phase's live log as it
   * comes (stdout and stderr in the order they arrive) and kept only as a bounded tail: a command
   * that prints forever costs no more memory than the row's limit.
   */
  async #run(id: string, command: string, timeoutMs: number, as: { user?: string; cwd?: string; env?: Record<string, string> } = {}): Promise<{ log: string; value: undefined }> {
    const live = this.#live.get(id);
    const out = new PhaseLog(() => undefined);
    const tails = { stdout: "", stderr: "" };
    const show = (s: string) => {
      out.append(s);
      live?.append(s);
    };
    show(`$ ${command}\n`);
    const proc = await this.engine.guest.spawn(id, { command, timeoutMs, ...as });
    proc.stdin.end();
    const drain = (name: "stdout" | "stderr") =>
      new Promise<void>((resolve) => {
        const decoder = new StringDecoder("utf8");
        const stream = proc[name];
        stream.on("data", (b: Buffer) => {
          const s = decoder.write(b);
          tails[name] = (tails[name] + s).slice(-ERROR_TAIL_CHARS);
          show(s);
        });
        stream.once("end", () => {
          show(decoder.end());
          resolve();
        });
      });
    const [, , r] = await Promise.all([drain("stdout"), drain("stderr"), proc.exited]);
    out.close();
    const log = out.text();
    if (r.timedOut) throw new PhaseFailure(`\`${command}\` ran past ${timeoutMs / 1000} s`, log);
    if (r.exitCode !== 0) throw new PhaseFailure(`\`${command}\` exited ${r.exitCode ?? r.signal}: ${lastLine(tails.stderr || tails.stdout)}`, log);
    return { log, value: undefined };
  }

  /**
   * The directory, and the VM's default working directory: the agent starts an exec or PTY
   * without a cwd there (Freestyle's meaning of a spec's workdir), in every VM booted from the
   * snapshot. Services keep their own (default /), as systemd's do.
   */
  async #workdir(id: string, dir: string): Promise<{ log: string; value: undefined }> {
    const made = await this.#run(id, `mkdir -p -- ${shq(dir)}`, BUILD_LIMITS.commandMs);
    return { log: made.log + (await this.#writeVmFile(id, DEFAULT_WORKDIR_FILE_IN_VM, `${dir}\n`)).log, value: undefined };
  }

  /** A FROM of a suite the host has no base image of is refused before any build: the operator builds images, not tenants. */
  async #assertBaseImage(suite: string): Promise<void> {
    const present = await fs.access(path.join(this.engine.options.imagesDir, suite, "rootfs")).then(() => true, () => false);
    if (!present) {
      throw new ApiError("BAD_REQUEST", `baseImage: FROM debian:${suite} needs a ${suite} base image, which this host does not have (its operator builds one with \`capsule image build ${suite} --suite ${suite}\`)`, 501, { unsupported: true });
    }
  }

  /**
   * The Dockerfile's steps in order: RUN through exec as the current USER in the current WORKDIR
   * with the ENV so far (WORKDIR is created as root, as Docker does). Its final ENV and WORKDIR
   * are the VM's: written where the agent reads them for every exec, PTY and service. USER only
   * applies to the RUNs: exec's user stays the request's (root by default).
   */
  async #dockerfile(id: string, df: Dockerfile): Promise<{ log: string; value: undefined }> {
    const env: Record<string, string> = {};
    let cwd: string | undefined;
    let user: string | undefined;
    let log = "";
    for (const step of df.steps) {
      if (step.op === "ENV") Object.assign(env, step.vars);
      else if (step.op === "USER") user = step.user;
      else if (step.op === "WORKDIR") {
        log += (await this.#run(id, `mkdir -p -- ${shq(step.path)}`, BUILD_LIMITS.commandMs)).log;
        cwd = step.path;
      } else {
        const ran = await this.#run(id, step.command, BUILD_LIMITS.dockerRunMs, { ...(user ? { user } : {}), ...(cwd ? { cwd } : {}), env }).catch((err: unknown) => {
          if (err instanceof PhaseFailure) throw new PhaseFailure(`RUN on line ${step.line}: ${err.message}`, log + err.log);
          throw err;
        });
        log += ran.log;
      }
    }
    if (Object.keys(env).length > 0) log += (await this.#writeVmFile(id, DEFAULT_ENV_FILE_IN_VM, JSON.stringify(env))).log;
    if (cwd) log += (await this.#writeVmFile(id, DEFAULT_WORKDIR_FILE_IN_VM, `${cwd}\n`)).log;
    return { log, value: undefined };
  }

  #writeVmFile(id: string, file: string, content: string): Promise<{ log: string; value: undefined }> {
    return this.#run(id, `mkdir -p -- ${shq(path.dirname(file))} && printf '%s' ${shq(content)} > ${shq(file)}`, BUILD_LIMITS.commandMs);
  }

  /** Groups first (users may name them), then users. */
  async #users(id: string, l: BuildLayer): Promise<{ log: string; value: undefined }> {
    let log = "";
    for (const command of [...l.groups.map(groupadd), ...l.users.map(useradd)]) log += (await this.#run(id, command, BUILD_LIMITS.commandMs)).log;
    return { log, value: undefined };
  }

  async #files(id: string, l: BuildLayer): Promise<{ log: string; value: undefined }> {
    const written: string[] = [];
    for (const [path, f] of Object.entries(l.files)) {
      const data = Buffer.from(f.content, f.encoding === "base64" ? "base64" : "utf8");
      await this.engine.guest.writeFile(id, path, data, { mkdirs: true, mode: f.executable ? 0o755 : 0o644 });
      written.push(`${path} (${data.length} bytes${f.executable ? ", executable" : ""})`);
    }
    return { log: written.join("\n"), value: undefined };
  }

  /** apt-get through the VM's apt config (the host's package cache when the VM has no egress). */
  #apt(id: string, packages: string[]): Promise<{ log: string; value: undefined }> {
    const command = `export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q --no-install-recommends ${packages.map(shq).join(" ")}`;
    return this.#run(id, command, BUILD_LIMITS.aptMs);
  }

  /**
   * Installs the services (patches over the base's, then new ones) and starts the enabled ones,
   * then waits until no oneshot still runs. Any service that ended `failed` fails the phase, with
   * every service's state and the failed ones' logs.
   */
  async #services(id: string, l: BuildLayer): Promise<{ log: string; value: undefined }> {
    const patched: ServiceSpec[] = [];
    for (const p of l.patchedServices) patched.push(patchServiceSpec(await this.engine.guest.serviceSpec(id, serviceId(p.name)), p));
    const specs = l.services.map((s) => toServiceSpec(s, undefined));
    const named = new Set(specs.map((s) => s.name));
    // The starting services' (runCommands, waitFor) last lines, read at each poll: the live log
    // shows them as they come. A service that stopped starting is read once more (its last lines);
    // a oneshot that removed itself keeps what was last read.
    const printed = new Map<string, string>();
    const ended = new Set<string>();
    const summary = (states: ServiceStatus[]) => states.map((s) => `${s.name}.service: ${s.activeState} (${s.subState}, ${s.result})`).join("\n");
    const withOutput = (states: ServiceStatus[]) => [summary(states), ...[...printed].map(([name, log]) => `--- ${name}.service ---\n${log}`)].join("\n");
    const poll = async () => {
      const states = await this.engine.guest.serviceList(id);
      for (const s of states.filter((x) => isStarting(x) || (printed.has(x.name) && !ended.has(x.name)))) {
        const lines = await this.engine.guest.serviceLogs(id, s.name, { lines: BUILD_LIMITS.failedLogLines }).catch(() => undefined);
        if (lines && lines.length > 0) printed.set(s.name, lines.map((e) => e.message).join("\n"));
        if (!isStarting(s)) ended.add(s.name);
      }
      this.#live.get(id)?.set(withOutput(states));
      return states;
    };
    // A define that starts services answers only once they settled (oneshots that end within the
    // agent's settle wait have ended): the poll runs beside it, so their output shows as it comes.
    const defining = this.engine.guest.serviceDefine(id, [...patched.filter((p) => !named.has(p.name)), ...specs], { replace: true, start: true });
    await whilePending(defining, BUILD_LIMITS.servicesPollMs, () => poll().then(() => undefined, () => undefined));
    const deadline = Date.now() + BUILD_LIMITS.servicesMs;
    let states = await poll();
    while (states.some(isStarting)) {
      if (Date.now() > deadline) throw new PhaseFailure(`services still starting after ${BUILD_LIMITS.servicesMs / 1000} s: ${states.filter(isStarting).map((s) => s.name).join(", ")}`, "", await this.#diagnostics(id, states));
      await new Promise((r) => setTimeout(r, BUILD_LIMITS.servicesPollMs));
      states = await poll();
    }
    const failed = states.filter((s) => s.activeState === "failed");
    const log = summary(states);
    if (failed.length > 0) {
      const diagnostics = await this.#diagnostics(id, states);
      // The message carries each failed service's last lines too: older clients show only the message.
      const tails = diagnostics.failedServiceLogs.map((f) => `--- ${f.unitName} ---\n${f.log.split("\n").slice(-BUILD_LIMITS.messageLogLines).join("\n")}`);
      throw new PhaseFailure(`service(s) failed: ${failed.map((s) => `${s.name}.service (${s.result})`).join(", ")}\n${tails.join("\n")}`, [log, ...diagnostics.failedServiceLogs.map((f) => `--- ${f.unitName} ---\n${f.log}`)].join("\n"), diagnostics);
    }
    await this.#dropMetRequirements(id, states);
    return { log: withOutput(states), value: undefined };
  }

  /**
   * A oneshot that deleted itself after success (runCommands) satisfied its dependents during the
   * build; in the snapshot it no longer exists, and a requirement on a missing service fails at
   * boot. So the remaining services lose `after`/`requires` entries naming services that are gone.
   */
  async #dropMetRequirements(id: string, states: ServiceStatus[]): Promise<void> {
    const present = new Set(states.map((s) => s.name));
    const kept = (units: string[] | undefined) => units?.filter((u) => present.has(serviceNameOf(u)));
    const changed: ServiceSpec[] = [];
    for (const s of states) {
      const spec = await this.engine.guest.serviceSpec(id, s.name);
      const after = kept(spec.after);
      const requires = kept(spec.requires);
      if (after?.length === spec.after?.length && requires?.length === spec.requires?.length) continue;
      const { after: _a, requires: _r, ...rest } = spec;
      changed.push({ ...rest, ...(after?.length ? { after } : {}), ...(requires?.length ? { requires } : {}) });
    }
    if (changed.length > 0) await this.engine.guest.serviceDefine(id, changed, { replace: true, start: false });
  }

  async #diagnostics(id: string, states: ServiceStatus[]): Promise<BuildDiagnostics> {
    const groups = new Map<string, BuildDiagnostics["serviceStates"][number]>();
    for (const s of states) {
      const key = `${s.activeState}/${s.subState}`;
      const g = groups.get(key) ?? { activeState: s.activeState, subState: s.subState, services: [] };
      g.services.push(`${s.name}.service`);
      groups.set(key, g);
    }
    const failedServiceLogs: BuildDiagnostics["failedServiceLogs"] = [];
    for (const s of states.filter((x) => x.activeState === "failed" || isStarting(x))) {
      const lines = await this.engine.guest.serviceLogs(id, s.name, { lines: BUILD_LIMITS.failedLogLines }).catch(() => []);
      failedServiceLogs.push({ unitName: `${s.name}.service`, log: lines.map((e) => e.message).join("\n") });
    }
    return { serviceStates: [...groups.values()], failedServiceLogs };
  }

  /** The snapshot, its row and the build's success: an intent first, like every snapshot the API makes. */
  async #snapshot(account: Account, vmId: string, buildId: string, name: string | null): Promise<{ log: string; value: string }> {
    const ticket = await this.quotas.admitSnapshot(account);
    const intent = this.rows.beginIntent(account.id, "snapshot");
    try {
      const snap = await this.engine.snapshotVm(vmId, { ...(name ? { name } : {}), owner: ownerLabel(account.id, intent) });
      this.buildRows.transaction(() => {
        this.rows.insertSnapshot({ id: snap.id, account_id: account.id, name, source_vm_id: null, created_at: snap.createdAt });
        this.buildRows.succeed(buildId, snap.id);
        this.rows.endIntent(intent);
      });
      return { log: `snapshot ${snap.id} (${snap.sizeBytes} bytes)`, value: snap.id };
    } catch (err) {
      // Not recorded: the intent stays, so a snapshot the engine made anyway is reconcile's garbage.
      throw toApiError(err);
    } finally {
      ticket.release();
    }
  }

  /**
   * After a restart, before the rows are reconciled: no build survives its server, so every
   * unfinished build is failed and every builder VM deleted (a snapshot one took but never
   * recorded is left to reconcile, by its intent).
   */
  async recover(): Promise<{ failed: string[]; deletedVms: string[] }> {
    await this.opts.repos?.recover();
    const failed = this.buildRows.unfinished();
    for (const id of failed) this.buildRows.fail(id, "the server stopped during the build");
    const deletedVms: string[] = [];
    for (const vm of (await this.engine.listVms()).filter((v) => isBuildOwner(v.owner))) {
      await this.engine.deleteVm(vm.id, { wait: true }).then(
        () => deletedVms.push(vm.id),
        (err: unknown) => this.log.error({ err, vmId: vm.id }, "could not delete a builder VM"),
      );
    }
    if (failed.length + deletedVms.length > 0) this.log.warn({ failed, deletedVms }, "builds: unfinished builds failed and their builder VMs deleted");
    return { failed, deletedVms };
  }
}

/**
 * A create's root `git`/`gitRepos` moved into its spec (outermost layer) or template; the same
 * fields in both places are refused rather than merged.
 */
function withRootGit<T extends { spec?: unknown; template?: Record<string, unknown> }>(body: T, git: Record<string, unknown>): T {
  const into = body.spec !== undefined && body.spec !== null ? "spec" : "template";
  const layer = (into === "spec" ? body.spec : body.template) ?? {};
  if (typeof layer !== "object" || Array.isArray(layer)) return body; // the parser names the bad spec
  for (const k of Object.keys(git)) {
    if ((layer as Record<string, unknown>)[k] != null) throw new ApiError("CREATE_VM_BAD_REQUEST", `${k} is set both on the create and in its ${into}: send it once`);
  }
  return { ...body, [into]: { ...layer, ...git } };
}

/** Awaits `work`, calling `tick` every `everyMs` (one at a time) until it settles; rejects as `work` does. */
async function whilePending<T>(work: Promise<T>, everyMs: number, tick: () => Promise<void>): Promise<T> {
  let settled = false;
  const ticking = (async () => {
    while (!settled) {
      await new Promise((r) => setTimeout(r, everyMs));
      if (!settled) await tick();
    }
  })();
  try {
    return await work;
  } finally {
    settled = true;
    await ticking;
  }
}

function isStarting(s: ServiceStatus): boolean {
  return s.activeState === "activating" || s.subState === "auto-restart";
}


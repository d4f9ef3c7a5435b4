/**
 * The VM services, wired together: `rows` (the API's SQLite rows), `views` (rows + engine
 * records as API objects), `power` (wake, start, stop, suspend), `provisioning` (create, fork,
 * snapshot, delete, reconcile) and `gateway` (the one way routes reach a VM's guest). Routes and
 * WebSocket handlers use these; none of them touches the engine directly.
 * @module
 */
import type { Engine } from "@capsule/engine";
import type { Logger } from "pino";
import type { ActivityTracker } from "./activity.js";
import { Builds } from "./builds/builder.js";
import { BuildRows } from "./builds/rows.js";
import type { Db } from "./db.js";
import { GuestGateway } from "./guest/gateway.js";
import { Power } from "./vms/power.js";
import { Provisioning, type ProvisioningOptions } from "./vms/provisioning.js";
import { DEFAULT_QUOTAS, defaultAdmission, Quotas, type QuotaOptions } from "./quotas.js";
import { Rows } from "./vms/rows.js";
import { DEFAULT_POOL, WarmPool, type PoolConfig } from "./vms/pool.js";
import type { VmState } from "@capsule/contract/schemas";
import { Views } from "./vms/views.js";
import { GIT_USER_NAME, lookupGitUser } from "./repos/git-user.js";
import { REPO_LIMITS, RepoMirrors } from "./repos/mirrors.js";
import { RepoPolicy } from "./repos/policy.js";

export { apiState } from "./vms/views.js";
export { sizingToLimits } from "./vms/provisioning.js";

/**
 * Quotas and admission default to `DEFAULT_QUOTAS` and this host's `defaultAdmission()`; the warm
 * pool to `DEFAULT_POOL`.
 */
export type VmServiceOptions = ProvisioningOptions &
  Partial<QuotaOptions> & {
    pool?: PoolConfig;
    /** Test seam: awaited before each warm pool boot (see PoolDeps.bootGate). */
    poolBootGate?: () => Promise<void>;
    /** URL prefixes of the repositories builds may clone (`git.repos`); none: a 501. */
    repoPrefixes?: string[];
    /** The mirrors' dir (default `<dataDir>-repos`), their total bound and idle time (config.ts). */
    repoMirrorsDir?: string;
    repoMirrorsMaxBytes?: number;
    repoMirrorUnusedDays?: number;
  };

export class VmService {
  readonly rows: Rows;
  readonly views: Views;
  readonly power: Power;
  readonly provisioning: Provisioning;
  readonly gateway: GuestGateway;
  /** Admission control and per-account quotas (quotas.ts). */
  readonly quotas: Quotas;
  /** Pre-booted VMs that creates claim (pool.ts). */
  readonly pool: WarmPool;
  /** Declarative snapshot builds (builds/builder.ts). */
  readonly builds: Builds;

  constructor(
    engine: Engine,
    db: Db,
    readonly activity: ActivityTracker,
    log: Logger,
    opts: VmServiceOptions,
  ) {
    this.rows = new Rows(db);
    this.quotas = new Quotas(engine, this.rows, { quotas: opts.quotas ?? DEFAULT_QUOTAS, admission: opts.admission ?? defaultAdmission() });
    const buildRows = new BuildRows(db);
    this.views = new Views(engine, this.rows, (id) => buildRows.ofSnapshot(id));
    this.power = new Power(engine, this.rows, activity, log, this.quotas);
    this.pool = new WarmPool(opts.pool ?? DEFAULT_POOL, {
      engine,
      log,
      defaultKind: () => ({ limits: this.quotas.fullLimits({}), egress: opts.egress }),
      admitHost: (limits) => this.quotas.admitHost(limits),
      busy: () => this.quotas.execsInFlight() > 0,
      ...(opts.poolBootGate ? { bootGate: opts.poolBootGate } : {}),
    });
    this.provisioning = new Provisioning(engine, this.rows, activity, log, opts, this.quotas, this.pool);
    this.gateway = new GuestGateway(engine, this.rows, this.power, activity);
    const repoPrefixes = opts.repoPrefixes ?? [];
    const repos = repoPrefixes.length > 0 ? this.#mirrors(engine, log, opts, repoPrefixes) : undefined;
    this.builds = new Builds(engine, this.rows, buildRows, this.quotas, log, { egress: opts.egress, ...(repos ? { repos } : {}) });
  }

  /** The mirrors, their git run as `capsule-git`; without that user, as the server, said loudly at start. */
  #mirrors(engine: Engine, log: Logger, opts: VmServiceOptions, prefixes: string[]): RepoMirrors {
    const user = lookupGitUser();
    if (!user) log.warn({ user: GIT_USER_NAME }, `repository mirrors: no ${GIT_USER_NAME} user on this host, so the host's git runs as the server's user (root); scripts/setup.sh creates it`);
    const limits = {
      ...REPO_LIMITS,
      ...(opts.repoMirrorsMaxBytes !== undefined ? { totalBytes: opts.repoMirrorsMaxBytes } : {}),
      ...(opts.repoMirrorUnusedDays !== undefined ? { unusedMs: opts.repoMirrorUnusedDays * 86_400_000 } : {}),
    };
    return new RepoMirrors(opts.repoMirrorsDir ?? `${engine.options.dataDir}-repos`, new RepoPolicy(prefixes), { limits, user });
  }

  /**
   * Makes the rows and the engine agree after a restart: builds first (their builder VMs go), then
   * Provisioning.reconcile.
   */
  async reconcile(): Promise<{ deleted: string[]; quarantined: string[] }> {
    const builds = await this.builds.recover();
    const r = await this.provisioning.reconcile();
    return { ...r, deleted: [...builds.deletedVms, ...r.deleted] };
  }

  /** Every account's VMs by API state, for metrics. */
  stateCounts(): Promise<Record<VmState, number>> {
    return this.views.stateCounts();
  }
}

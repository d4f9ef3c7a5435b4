/**
 * Builds of declarative snapshots: a `Build` handle with the official client's methods (`get`,
 * `phases`, `wait`, `failedPhase`), and `capsule.builds` to list the account's builds.
 * @module
 */
import { makeError } from "./errors.js";
import { seg, type Transport } from "./transport.js";
import type { BuildInfo, BuildList, BuildListQuery, BuildPhase } from "./types.js";

/** `wait()`'s defaults, the official client's: poll every 2 s, give up after 10 minutes. */
export const BUILD_WAIT_INTERVAL_MS = 2_000;
export const BUILD_WAIT_TIMEOUT_MS = 10 * 60_000;

export interface BuildWaitOptions {
  intervalMs?: number;
  timeoutMs?: number;
}

const finished = (b: BuildInfo) => b.state === "succeeded" || b.state === "failed";

/** One build, by id (no request until a method is called). */
export class Build {
  /** @internal */
  constructor(
    private readonly t: Transport,
    readonly buildId: string,
  ) {}

  /** The build's record: state, planned phases, failure reason, times. */
  async get(): Promise<BuildInfo> {
    return this.t.json("GET", `/v1/vms/builds/${seg(this.buildId)}`);
  }

  /** The phases that ran so far, each with its state and the tail of its log (a phase's log is stored when it ends). */
  async phases(): Promise<BuildPhase[]> {
    return (await this.t.json<{ phases: BuildPhase[] }>("GET", `/v1/vms/builds/${seg(this.buildId)}/phases`)).phases;
  }

  /** Polls until the build succeeded or failed; answers its record (a failed build is not thrown). */
  async wait({ intervalMs = BUILD_WAIT_INTERVAL_MS, timeoutMs = BUILD_WAIT_TIMEOUT_MS }: BuildWaitOptions = {}): Promise<BuildInfo> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const b = await this.get();
      if (finished(b)) return b;
      if (Date.now() > deadline) throw makeError("BUILD_TIMED_OUT", `build ${this.buildId} did not finish within ${timeoutMs} ms (state ${b.state})`);
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }

  /** The phase that failed, or null when none did. */
  async failedPhase(): Promise<BuildPhase | null> {
    return (await this.phases()).find((p) => p.state === "failed") ?? null;
  }
}

/** The account's builds. */
export class Builds {
  /** @internal */
  constructor(private readonly t: Transport) {}

  /** A handle for a build id, without a request. */
  ref({ buildId }: { buildId: string }): Build {
    return new Build(this.t, buildId);
  }

  /** A build's record. */
  async get({ buildId }: { buildId: string }): Promise<BuildInfo> {
    return this.ref({ buildId }).get();
  }

  /** One page of the account's builds, newest first (Capsule's; the official client has no list). */
  async list(query: BuildListQuery = {}): Promise<BuildList> {
    return this.t.json("GET", "/v1/vms/builds", { query: { state: query.state, limit: query.limit, offset: query.offset } });
  }
}

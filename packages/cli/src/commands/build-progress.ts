/**
 * The progress of builds while an ensure is in flight. The ensure answers only when its builds
 * have ended, so the builds are found by listing the account's running ones: any that was not
 * running before the ensure was sent is taken for one of its layers (another client of the same
 * account building at the same moment would show up too; the final answer names the real one).
 * A terminal gets one live line per phase, redrawn in place; anything else gets a line when a
 * phase starts and one when it ends.
 * @module
 */
import type { BuildPhase, Capsule } from "@capsule/sdk";

/** How often the builds and their phases are read. */
export const PROGRESS_POLL_MS = 500;
/** Lines of a failed phase's log printed under it. */
export const FAILED_LOG_TAIL_LINES = 30;

type Out = Pick<NodeJS.WriteStream, "write"> & { isTTY?: boolean };

const seconds = (p: BuildPhase, now: number) => `${(((p.finishedAt ? Date.parse(p.finishedAt) : now) - Date.parse(p.startedAt)) / 1000).toFixed(1)}s`;
const MARK: Record<BuildPhase["state"], string> = { running: "…", succeeded: "✓", failed: "✗" };

/** Renders the phases of the builds it is given, to a TTY in place or as lines. */
export class PhaseDisplay {
  #printed = new Map<string, BuildPhase["state"]>();
  #ttyLines = 0;

  constructor(private readonly out: Out) {}

  /** Shows the current phases of each build (in the order the builds were found). */
  show(builds: ReadonlyMap<string, BuildPhase[]>, now = Date.now()): void {
    if (this.out.isTTY) return this.#redraw(builds, now);
    for (const [buildId, phases] of builds) {
      for (const p of phases) {
        const seen = this.#printed.get(p.phaseId);
        if (seen === p.state) continue;
        if (seen === undefined) this.out.write(`build ${buildId}: ${p.name} started\n`);
        if (p.state !== "running") this.out.write(`build ${buildId}: ${p.name} ${p.state} (${seconds(p, now)})\n`);
        this.#printed.set(p.phaseId, p.state);
      }
    }
  }

  #redraw(builds: ReadonlyMap<string, BuildPhase[]>, now: number): void {
    const lines: string[] = [];
    for (const [buildId, phases] of builds) {
      lines.push(`build ${buildId}`);
      for (const p of phases) lines.push(`  ${MARK[p.state]} ${p.name.padEnd(10)} ${seconds(p, now)}`);
    }
    // Up to the first line drawn last time, then each line cleared and written again.
    const up = this.#ttyLines > 0 ? `\x1b[${this.#ttyLines}F` : "";
    this.out.write(`${up}${lines.map((l) => `\x1b[2K${l}\n`).join("")}`);
    this.#ttyLines = lines.length;
  }
}

/** The last `n` lines of a log. */
export function tail(log: string, n = FAILED_LOG_TAIL_LINES): string {
  const lines = log.replace(/\n$/, "").split("\n");
  return lines.slice(-n).join("\n");
}

/**
 * Runs `work` (the ensure) while showing the phases of the builds it starts; after it settles,
 * shows `finalBuildId`'s phases once more (the last poll may be older than its end).
 */
export async function withProgress<T>(capsule: Capsule, display: PhaseDisplay, work: () => Promise<T>, finalBuildId: (settled: { value?: T; error?: unknown }) => string | undefined): Promise<T> {
  const before = new Set((await capsule.builds.list({ state: "running" })).builds.map((b) => b.buildId));
  const seen = new Map<string, BuildPhase[]>();
  let done = false;
  const poll = async () => {
    while (!done) {
      await new Promise((r) => setTimeout(r, PROGRESS_POLL_MS));
      if (done) break;
      try {
        const running = (await capsule.builds.list({ state: "running" })).builds.filter((b) => !before.has(b.buildId));
        for (const b of running) if (!seen.has(b.buildId)) seen.set(b.buildId, []);
        // Builds found earlier are read too: one that ended since has its last phases to show.
        for (const id of seen.keys()) seen.set(id, await capsule.builds.ref({ buildId: id }).phases());
        if (!done) display.show(seen);
      } catch {
        // Progress is best effort: the ensure's own answer reports what matters.
      }
    }
  };
  const polling = poll();
  const settle = async (s: { value?: T; error?: unknown }) => {
    done = true;
    await polling;
    const id = finalBuildId(s);
    if (id !== undefined) {
      seen.set(id, await capsule.builds.ref({ buildId: id }).phases().catch(() => seen.get(id) ?? []));
      display.show(seen);
    }
  };
  try {
    const value = await work();
    await settle({ value });
    return value;
  } catch (error) {
    await settle({ error });
    throw error;
  }
}

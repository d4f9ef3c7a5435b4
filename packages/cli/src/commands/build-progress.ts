/**
 * The progress of builds while an ensure is in flight. The ensure answers only when its builds
 * have ended, so the builds are found by listing the account's running ones: any that was not
 * running before the ensure was sent is taken for one of its layers (another client of the same
 * account building at the same moment would show up too; the final answer names the real one).
 * A terminal gets one live line per phase, redrawn in place, with the running phase's last log
 * lines under it; anything else gets a line when a phase starts, its log's lines as they come (the
 * server writes a running phase's log about once a second), and a line when it ends. A build
 * that ended is read once more and then no longer.
 * @module
 */
import type { BuildPhase, Capsule } from "@capsule/sdk";

/** How often the builds and their phases are read. */
export const PROGRESS_POLL_MS = 500;
/** Lines of a failed phase's log printed under it. */
export const FAILED_LOG_TAIL_LINES = 30;
/** Lines of a running phase's log a terminal shows under it. */
export const LIVE_TAIL_LINES = 5;

type Out = Pick<NodeJS.WriteStream, "write"> & { isTTY?: boolean; columns?: number };

const seconds = (p: BuildPhase, now: number) => `${(((p.finishedAt ? Date.parse(p.finishedAt) : now) - Date.parse(p.startedAt)) / 1000).toFixed(1)}s`;
const MARK: Record<BuildPhase["state"], string> = { running: "…", succeeded: "✓", failed: "✗" };

/** Renders the phases of the builds it is given, to a TTY in place or as lines. */
export class PhaseDisplay {
  #printed = new Map<string, BuildPhase["state"]>();
  /** Per phase, the log as last seen, so only its new lines are printed. */
  #logs = new Map<string, string>();
  #ttyLines = 0;

  constructor(private readonly out: Out) {}

  /** Shows the current phases of each build (in the order the builds were found). */
  show(builds: ReadonlyMap<string, BuildPhase[]>, now = Date.now()): void {
    if (this.out.isTTY) return this.#redraw(builds, now);
    for (const [buildId, phases] of builds) {
      for (const p of phases) {
        const seen = this.#printed.get(p.phaseId);
        if (seen === undefined) this.out.write(`build ${buildId}: ${p.name} started\n`);
        for (const line of this.#newLines(p)) this.out.write(`  ${line}\n`);
        if (seen === p.state) continue;
        if (p.state !== "running") this.out.write(`build ${buildId}: ${p.name} ${p.state} (${seconds(p, now)})\n`);
        this.#printed.set(p.phaseId, p.state);
      }
    }
  }

  /**
   * The lines of the phase's log not printed yet: while it runs only whole lines. The log is a
   * tail the server may cut or rewrite (the services' phase), so when it does not extend what was
   * seen, printing resumes after the last line printed, if the new log still holds it.
   */
  #newLines(p: BuildPhase): string[] {
    const prev = this.#logs.get(p.phaseId) ?? "";
    const log = p.state === "running" ? p.log.slice(0, p.log.lastIndexOf("\n") + 1) : p.log.endsWith("\n") || p.log === "" ? p.log : `${p.log}\n`;
    if (log === prev) return [];
    this.#logs.set(p.phaseId, log);
    let fresh: string;
    if (log.startsWith(prev)) fresh = log.slice(prev.length);
    else {
      const last = prev.replace(/\n$/, "").split("\n").at(-1) ?? "";
      const at = last === "" ? -1 : log.lastIndexOf(`${last}\n`);
      fresh = at < 0 ? log : log.slice(at + last.length + 1);
    }
    return fresh === "" ? [] : fresh.replace(/\n$/, "").split("\n");
  }

  #redraw(builds: ReadonlyMap<string, BuildPhase[]>, now: number): void {
    // Lines cut to the terminal's width: a wrapped line would throw off the redraw's line count.
    const width = Math.max(20, (this.out.columns ?? 100) - 1);
    const lines: string[] = [];
    for (const [buildId, phases] of builds) {
      lines.push(`build ${buildId}`);
      for (const p of phases) {
        lines.push(`  ${MARK[p.state]} ${p.name.padEnd(10)} ${seconds(p, now)}`);
        if (p.state === "running" && p.log !== "") lines.push(...tail(p.log, LIVE_TAIL_LINES).split("\n").map((l) => `      ${l}`.slice(0, width)));
      }
    }
    // Up to the first line drawn last time, then each line cleared and written again.
    const up = this.#ttyLines > 0 ? `\x1b[${this.#ttyLines}F` : "";
    this.out.write(`${up}${lines.map((l) => `\x1b[2K${l}\n`).join("")}`);
    // A frame shorter than the last leaves old lines below: cleared, and the cursor back up.
    const extra = this.#ttyLines - lines.length;
    if (extra > 0) this.out.write(`${"\x1b[2K\n".repeat(extra)}\x1b[${extra}F`);
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
  const ended = new Set<string>();
  let done = false;
  const poll = async () => {
    while (!done) {
      await new Promise((r) => setTimeout(r, PROGRESS_POLL_MS));
      if (done) break;
      try {
        const running = new Set((await capsule.builds.list({ state: "running" })).builds.map((b) => b.buildId).filter((id) => !before.has(id)));
        for (const id of running) if (!seen.has(id)) seen.set(id, []);
        // A build found earlier that no longer runs is read once more (its last phases), then no longer.
        for (const id of seen.keys()) {
          if (ended.has(id)) continue;
          seen.set(id, await capsule.builds.ref({ buildId: id }).phases());
          if (!running.has(id)) ended.add(id);
        }
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

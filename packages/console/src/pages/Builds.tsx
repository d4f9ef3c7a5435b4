import { Fragment } from "react";
import { age, buildPhases, listBuilds, type BuildInfo, type BuildPhase } from "../api";
import { href } from "../router";
import { usePoll } from "./usePoll";

/** Builds listed: the newest ones, enough for a console (the API pages further). */
const BUILDS_SHOWN = 50;

const took = (from: string, to: string | null) => (to ? `${((Date.parse(to) - Date.parse(from)) / 1000).toFixed(1)} s` : "running");

/** The account's declarative snapshot builds; `open` (from `#/builds/<id>`) shows that build's phases and logs. */
export function BuildsPage({ open }: { open?: string | undefined }) {
  const { data, error } = usePoll(() => listBuilds(BUILDS_SHOWN), 3000);
  return (
    <section>
      <div className="title-row">
        <h2>Builds</h2>
        {data && <span className="muted">{data.totalCount > data.builds.length ? `newest ${data.builds.length} of ${data.totalCount}` : `${data.totalCount} in all`}</span>}
      </div>
      {error && <p className="error">{error}</p>}
      <table data-testid="build-table">
        <thead>
          <tr>
            <th>Build</th>
            <th>State</th>
            <th>Started</th>
            <th>Took</th>
            <th>Snapshot</th>
            <th>Phases</th>
          </tr>
        </thead>
        <tbody>
          {data?.builds.length === 0 && (
            <tr>
              <td colSpan={6} className="muted">
                No builds yet. `capsule snapshot build --spec spec.json` or the SDK's snapshots.ensure() makes one.
              </td>
            </tr>
          )}
          {data?.builds.map((b) => (
            <Fragment key={b.buildId}>
              <BuildRow build={b} open={open === b.buildId} />
              {open === b.buildId && (
                <tr className="detail">
                  <td colSpan={6}>
                    <BuildDetail build={b} />
                  </td>
                </tr>
              )}
            </Fragment>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function BuildRow({ build: b, open }: { build: BuildInfo; open: boolean }) {
  return (
    <tr data-build-id={b.buildId}>
      <td>
        <a href={open ? href(["builds"]) : href(["builds", b.buildId])}>
          <code>{b.buildId}</code>
        </a>
      </td>
      <td>
        <span className={`state state-${b.state}`}>{b.state}</span>
        {b.failureReason && <div className="error" data-testid="failure-reason">{b.failureReason.split("\n")[0]}</div>}
      </td>
      <td title={b.startedAt}>{age(b.startedAt)}</td>
      <td>{took(b.startedAt, b.finishedAt)}</td>
      <td>{b.snapshotId ? <code>{b.snapshotId}</code> : <span className="muted">—</span>}</td>
      <td className="muted">{b.plannedPhases.join(" → ")}</td>
    </tr>
  );
}

/** Each phase with its state, time and log (read again while the build runs: a running phase's log grows, and is shown open). */
function BuildDetail({ build }: { build: BuildInfo }) {
  const { data: phases, error } = usePoll(() => buildPhases(build.buildId), build.finishedAt ? 60_000 : 2000);
  if (error) return <p className="error">{error}</p>;
  if (!phases) return <p className="muted">Loading phases…</p>;
  const byName = new Map<string, BuildPhase>(phases.map((p) => [p.name, p]));
  return (
    <div data-testid="build-phases">
      {build.plannedPhases.map((name) => {
        const p = byName.get(name);
        const state = p?.state ?? (build.finishedAt ? "not run" : "pending");
        return (
          <details key={name} data-phase={name} open={p?.state === "failed" || p?.state === "running"}>
            <summary>
              <strong>{name}</strong> <span className={`state state-${p?.state ?? "pending"}`}>{state}</span> {p && <span className="muted">{took(p.startedAt, p.finishedAt)}</span>}
            </summary>
            <pre className="log-lines">{p?.log || (p?.finishedAt ? "(no output)" : "(no output yet)")}</pre>
          </details>
        );
      })}
    </div>
  );
}

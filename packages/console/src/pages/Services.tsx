/**
 * A VM's services (`vm.systemd`): their states, start / stop / restart, and the newest lines of one
 * service's log, refreshed on demand. Only a running VM is asked anything: every services call
 * goes into the guest, which would wake a suspended VM. While the page is open (and visible) the
 * list is re-read every few seconds, which counts as activity, as an open terminal does.
 */
import { useEffect, useState } from "react";
import { controlService, listServices, serviceLogs, type SystemdLogs, type SystemdServiceStatus } from "../api";
import { usePoll } from "./usePoll";

const POLL_MS = 3000;
/** The choices of how many log lines to show; the API answers at most 1000. */
const LOG_LINE_CHOICES = [50, 100, 500, 1000] as const;
const DEFAULT_LOG_LINES = 100;
type Action = "start" | "stop" | "restart";
/** syslog priorities the API gives a line: stderr, and the supervisor's own notices. */
const PRIORITY_CLASS: Record<string, string> = { "3": "log-stderr", "5": "log-supervisor" };

export function ServicesPanel({ vmId, running }: { vmId: string; running: boolean }) {
  const services = usePoll(() => (running ? listServices(vmId) : Promise.resolve(undefined)), POLL_MS);
  const [selected, setSelected] = useState<string>();
  const [flash, setFlash] = useState<{ ok: boolean; text: string }>();
  const [busy, setBusy] = useState<string>();

  const act = async (name: string, action: Action) => {
    setBusy(name);
    try {
      const [result] = await controlService(vmId, name, action);
      setFlash({ ok: result?.success ?? false, text: result?.message ?? `${action} ${name}: no answer` });
    } catch (err) {
      setFlash({ ok: false, text: `${action} ${name} failed: ${err instanceof Error ? err.message : String(err)}` });
    } finally {
      setBusy(undefined);
    }
    services.reload();
  };

  return (
    <div className="card services" data-testid="services">
      <h3>Services</h3>
      {!running && <p className="muted">The VM is not running: its services show when it runs.</p>}
      {flash && (
        <p className={flash.ok ? "flash" : "error"} data-testid="service-flash">
          {flash.text}
        </p>
      )}
      {running && services.error && <p className="error">{services.error}</p>}
      {running && services.data && (
        <table data-testid="services-table">
          <thead>
            <tr>
              <th>Service</th>
              <th>State</th>
              <th>User</th>
              <th>At boot</th>
              <th>Restarts</th>
              <th>Actions</th>
            </tr>
          </thead>
          <tbody>
            {services.data.length === 0 && (
              <tr>
                <td colSpan={6} className="muted">
                  No services. Create one with <code>capsule vm service create</code> or <code>vm.systemd.create</code>.
                </td>
              </tr>
            )}
            {services.data.map((s) => (
              <ServiceRow key={s.name} s={s} busy={busy === s.name} onAct={(a) => void act(s.name, a)} onLogs={() => setSelected(s.name)} />
            ))}
          </tbody>
        </table>
      )}
      {running && selected && <ServiceLogs key={selected} vmId={vmId} name={selected} onClose={() => setSelected(undefined)} />}
    </div>
  );
}

function ServiceRow({ s, busy, onAct, onLogs }: { s: SystemdServiceStatus; busy: boolean; onAct: (a: Action) => void; onLogs: () => void }) {
  const active = s.activeState === "active" || s.activeState === "activating";
  return (
    <tr data-service={s.name} data-active-state={s.activeState} data-sub-state={s.subState}>
      <td>
        <code>{s.name}</code>
      </td>
      <td title={`last result: ${s.result}`}>
        <span className={`state svc-${s.activeState}`} data-testid="service-state">
          {s.activeState} ({s.subState})
        </span>
        {s.pid !== null && <span className="muted"> pid {s.pid}</span>}
      </td>
      <td>{s.user}</td>
      <td>{s.enabled ? "enabled" : "disabled"}</td>
      <td>{s.restarts}</td>
      <td className="actions">
        {active ? (
          <button onClick={() => onAct("stop")} disabled={busy} data-testid="service-stop">
            Stop
          </button>
        ) : (
          <button onClick={() => onAct("start")} disabled={busy} data-testid="service-start">
            Start
          </button>
        )}
        <button onClick={() => onAct("restart")} disabled={busy} data-testid="service-restart">
          Restart
        </button>
        <button onClick={onLogs} data-testid="service-logs-open">
          Logs
        </button>
      </td>
    </tr>
  );
}

function ServiceLogs({ vmId, name, onClose }: { vmId: string; name: string; onClose: () => void }) {
  const [lines, setLines] = useState<number>(DEFAULT_LOG_LINES);
  const [reads, setReads] = useState(0);
  const logs = useServiceLogs(vmId, name, lines, reads);
  return (
    <div className="service-logs" data-testid="service-logs" data-service={name}>
      <div className="row">
        <h4>
          Logs · <code>{name}</code>
        </h4>
        <span className="spacer" />
        <label className="inline">
          Last
          <select value={lines} onChange={(e) => setLines(Number(e.target.value))} data-testid="logs-lines">
            {LOG_LINE_CHOICES.map((n) => (
              <option key={n} value={n}>
                {n} lines
              </option>
            ))}
          </select>
        </label>
        <button onClick={() => setReads((n) => n + 1)} data-testid="logs-refresh">
          Refresh
        </button>
        <button onClick={onClose}>Close</button>
      </div>
      {logs.error && <p className="error">{logs.error}</p>}
      <pre className="log-lines" data-testid="log-lines">
        {logs.data?.length === 0 && <span className="muted">No log lines yet.</span>}
        {logs.data?.map((l, i) => (
          <div key={i} className={PRIORITY_CLASS[l.priority ?? ""] ?? ""} data-testid="log-line">
            <span className="log-time">{l.timestamp}</span> {l.message}
          </div>
        ))}
      </pre>
    </div>
  );
}

/**
 * The service's newest `lines` log lines, read when shown and again whenever `reads` changes (the
 * Refresh button): a log is read when someone looks, not polled. A read that a newer one
 * overtook is dropped.
 */
function useServiceLogs(vmId: string, name: string, lines: number, reads: number): { data?: SystemdLogs["logs"]; error?: string } {
  const [state, setState] = useState<{ data?: SystemdLogs["logs"]; error?: string }>({});
  useEffect(() => {
    let latest = true;
    serviceLogs(vmId, name, lines).then(
      (data) => {
        if (latest) setState({ data });
      },
      (e: unknown) => {
        if (latest) setState((s) => ({ ...s, error: e instanceof Error ? e.message : String(e) }));
      },
    );
    return () => {
      latest = false;
    };
  }, [vmId, name, lines, reads]);
  return state;
}

/**
 * A VM's preview ports: the ones its owner made public or shared (from `GET /v1/vms/{id}/ports`),
 * each a link to its preview, and a field to open any port's preview. Every link goes through the
 * console's handoff (`/console/preview?to=`), which opens a private preview host for this console
 * user without the console's cookie ever reaching it. Reading the list touches only the database,
 * never the VM, so a suspended VM stays asleep until a link is followed.
 */
import { useState } from "react";
import { listPorts, portAccess, type PortSummary } from "../api";
import { usePoll } from "./usePoll";

const POLL_MS = 5000;

/** The console's way into a preview URL (the server checks the session and the VM's owner). */
export const previewLink = (url: string): string => `/console/preview?to=${encodeURIComponent(url)}`;

function describe(p: PortSummary): string {
  const shares = p.shares.length === 1 ? "1 live share" : `${p.shares.length} live shares`;
  return [p.public ? "public" : "private", ...(p.shares.length > 0 ? [shares] : [])].join(" · ");
}

export function PortsPanel({ vmId }: { vmId: string }) {
  const ports = usePoll(() => listPorts(vmId), POLL_MS);
  const [port, setPort] = useState("");
  const [error, setError] = useState<string>();

  const open = async () => {
    setError(undefined);
    const n = Number(port);
    if (!Number.isInteger(n) || n < 1 || n > 65535) return setError("a port is a number from 1 to 65535");
    try {
      window.location.assign(previewLink((await portAccess(vmId, n)).url));
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  };

  return (
    <div className="card ports" data-testid="ports">
      <h3>Preview ports</h3>
      {ports.error && <p className="error">{ports.error}</p>}
      {ports.data && ports.data.length === 0 && <p className="muted">No port is public or shared.</p>}
      {ports.data && ports.data.length > 0 && (
        <ul>
          {ports.data.map((p) => (
            <li key={p.port}>
              <a href={previewLink(p.url)} data-testid={`port-${p.port}`}>
                {p.url}
              </a>{" "}
              <span className="muted">{describe(p)}</span>
            </li>
          ))}
        </ul>
      )}
      <form
        className="row"
        onSubmit={(e) => {
          e.preventDefault();
          void open();
        }}
      >
        <label className="inline">
          Open port
          <input data-testid="open-port" inputMode="numeric" size={6} value={port} onChange={(e) => setPort(e.target.value)} placeholder="5173" />
        </label>
        <button type="submit" data-testid="open-port-go">
          Open preview
        </button>
        {error && <span className="error">{error}</span>}
      </form>
    </div>
  );
}

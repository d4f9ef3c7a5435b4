import { useState } from "react";
import { age, api, bytes, listSnapshots, listVms } from "../api";
import { useConfirm } from "../confirm";
import { href } from "../router";
import { usePoll } from "./usePoll";

export function SnapshotsPage() {
  const { data, error, reload } = usePoll(async () => {
    const [vms, snapshots] = await Promise.all([listVms(), listSnapshots()]);
    return { vms, snapshots };
  }, 3000);
  const [dialog, confirm] = useConfirm();
  const [flash, setFlash] = useState<{ ok: boolean; text: string }>();

  const remove = async (id: string, users: number) => {
    if ((await confirm(`Delete snapshot ${id}?${users ? ` ${users} VM(s) booted from it keep their disks.` : ""}`, { danger: true })) === false) return;
    try {
      await api("DELETE", `/v1/vms/snapshots/${encodeURIComponent(id)}`);
      setFlash({ ok: true, text: `Deleted snapshot ${id}` });
    } catch (err) {
      setFlash({ ok: false, text: `Delete failed: ${err instanceof Error ? err.message : String(err)}` });
    }
    reload();
  };
  const boot = async (id: string) => {
    try {
      const r = await api<{ id: string }>("POST", "/v1/vms", { snapshotId: id });
      setFlash({ ok: true, text: `Created VM ${r.id} from ${id}` });
    } catch (err) {
      setFlash({ ok: false, text: `Create failed: ${err instanceof Error ? err.message : String(err)}` });
    }
    reload();
  };

  return (
    <section>
      <div className="title-row">
        <h2>Snapshots</h2>
      </div>
      {flash && <p className={flash.ok ? "flash" : "error"}>{flash.text}</p>}
      {error && <p className="error">{error}</p>}
      <table data-testid="snapshot-table">
        <thead>
          <tr>
            <th>Snapshot</th>
            <th>Age</th>
            <th>Size</th>
            <th>Source</th>
            <th>VMs using it</th>
            <th>Actions</th>
          </tr>
        </thead>
        <tbody>
          {data?.snapshots.length === 0 && (
            <tr>
              <td colSpan={6} className="muted">
                No snapshots yet. Take one from the VM list.
              </td>
            </tr>
          )}
          {data?.snapshots.map((s) => {
            const users = data.vms.filter((v) => v.snapshotId === s.snapshotId);
            return (
              <tr key={s.snapshotId} data-snapshot-id={s.snapshotId}>
                <td>
                  <code>{s.snapshotId}</code>
                  {s.name && <div className="muted">{s.name}</div>}
                </td>
                <td title={s.createdAt}>{age(s.createdAt)}</td>
                <td>{bytes(s.sizeBytes)}</td>
                <td>
                  {s.buildId ? (
                    <a href={href(["builds", s.buildId])} data-testid="snapshot-build">
                      build <code>{s.buildId}</code>
                    </a>
                  ) : s.sourceVmId ? (
                    <code>{s.sourceVmId}</code>
                  ) : (
                    <span className="muted">—</span>
                  )}
                </td>
                <td>{users.length ? users.map((v) => <code key={v.id} className="chip">{v.id}</code>) : <span className="muted">none</span>}</td>
                <td className="actions">
                  <button onClick={() => void boot(s.snapshotId)}>New VM</button>
                  <button className="danger" onClick={() => void remove(s.snapshotId, users.length)}>
                    Delete
                  </button>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {dialog}
    </section>
  );
}

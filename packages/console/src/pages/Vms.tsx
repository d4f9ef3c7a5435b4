import { useState, type FormEvent } from "react";
import { age, api, listSnapshots, listVms, vmPath, type SnapshotInfo, type VmInfo } from "../api";
import { useConfirm } from "../confirm";
import { href } from "../router";
import { usePoll } from "./usePoll";

export function VmsPage() {
  const { data, error, reload } = usePoll(async () => {
    const [vms, snapshots] = await Promise.all([listVms(), listSnapshots()]);
    return { vms, snapshots };
  });
  const [dialog, confirm] = useConfirm();
  const [flash, setFlash] = useState<{ ok: boolean; text: string }>();

  const act = async (what: string, fn: () => Promise<string | void>) => {
    try {
      const text = await fn();
      setFlash({ ok: true, text: text ?? `${what}: done` });
    } catch (err) {
      setFlash({ ok: false, text: `${what} failed: ${err instanceof Error ? err.message : String(err)}` });
    }
    reload();
  };

  const lifecycle = async (vm: VmInfo, op: "start" | "stop" | "suspend") => {
    if ((await confirm(`${op[0]?.toUpperCase()}${op.slice(1)} VM ${vm.id}?`, { danger: op !== "start" })) === false) return;
    await act(`${op} ${vm.id}`, async () => void (await api("POST", `${vmPath(vm.id)}/${op}`, {})));
  };
  const remove = async (vm: VmInfo) => {
    if ((await confirm(`Delete VM ${vm.id}? Its disk is removed; snapshots stay.`, { danger: true })) === false) return;
    await act(`delete ${vm.id}`, async () => void (await api("DELETE", vmPath(vm.id))));
  };
  const snapshot = async (vm: VmInfo) => {
    const name = await confirm(`Snapshot VM ${vm.id}? It keeps running.`, { input: { label: "Name (optional)", placeholder: "after-setup" } });
    if (name === false) return;
    await act(`snapshot ${vm.id}`, async () => {
      const r = await api<{ snapshotId: string }>("POST", `${vmPath(vm.id)}/snapshot`, name ? { name } : {});
      return `Snapshot ${r.snapshotId} created from ${vm.id}`;
    });
  };
  const fork = async (vm: VmInfo) => {
    if ((await confirm(`Fork VM ${vm.id}? The copy starts with the same disk.`)) === false) return;
    await act(`fork ${vm.id}`, async () => {
      const r = await api<{ forks: { id: string }[] }>("POST", `${vmPath(vm.id)}/fork`, {});
      return `Forked ${vm.id} → ${r.forks.map((f) => f.id).join(", ")}`;
    });
  };

  return (
    <section>
      <div className="title-row">
        <h2>VMs</h2>
        <span className="muted">{data ? `${data.vms.length} total, ${data.vms.filter((v) => v.state === "running").length} running · updates every 2 s` : ""}</span>
      </div>
      <CreateVm snapshots={data?.snapshots ?? []} onDone={(t, ok) => (setFlash({ ok, text: t }), reload())} />
      {flash && (
        <p className={flash.ok ? "flash" : "error"} data-testid="flash">
          {flash.text}
        </p>
      )}
      {error && <p className="error">{error}</p>}
      <table data-testid="vm-table">
        <thead>
          <tr>
            <th>VM</th>
            <th>State</th>
            <th>Age</th>
            <th>Source snapshot</th>
            <th>Idle timeout</th>
            <th>Actions</th>
          </tr>
        </thead>
        <tbody>
          {data?.vms.length === 0 && (
            <tr>
              <td colSpan={6} className="muted">
                No VMs yet.
              </td>
            </tr>
          )}
          {data?.vms.map((vm) => (
            <tr key={vm.id} data-vm-id={vm.id} data-state={vm.state}>
              <td>
                <a href={href(["vms", vm.id])} data-testid="open-vm">
                  <code>{vm.id}</code>
                </a>
                {vm.name && <div className="muted">{vm.name}</div>}
              </td>
              <td>
                <span className={`state state-${vm.state}`}>{vm.state}</span>
              </td>
              <td title={vm.createdAt}>{age(vm.createdAt)}</td>
              <td>{vm.snapshotId ? <code>{vm.snapshotId}</code> : <span className="muted">base image</span>}</td>
              <td>{vm.idleTimeoutSeconds === null ? "never" : `${vm.idleTimeoutSeconds} s`}</td>
              <td className="actions">
                <a className="button" href={href(["vms", vm.id, "terminal"])} data-testid="open-terminal">
                  Terminal
                </a>
                <a className="button" href={href(["vms", vm.id, "files"])} data-testid="open-files">
                  Files
                </a>
                {vm.state === "running" ? (
                  <>
                    <button onClick={() => void lifecycle(vm, "stop")}>Stop</button>
                    <button onClick={() => void lifecycle(vm, "suspend")}>Suspend</button>
                  </>
                ) : (
                  <button onClick={() => void lifecycle(vm, "start")}>Start</button>
                )}
                <button onClick={() => void snapshot(vm)} data-testid="snapshot">
                  Snapshot
                </button>
                <button onClick={() => void fork(vm)}>Fork</button>
                <button className="danger" onClick={() => void remove(vm)} data-testid="delete">
                  Delete
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {dialog}
    </section>
  );
}

function CreateVm({ snapshots, onDone, initialSnapshot = "" }: { snapshots: SnapshotInfo[]; onDone: (text: string, ok: boolean) => void; initialSnapshot?: string }) {
  const [source, setSource] = useState(initialSnapshot);
  const [name, setName] = useState("");
  const [idle, setIdle] = useState("default");
  const [custom, setCustom] = useState("300");
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    try {
      const body: Record<string, unknown> = {};
      if (source) body.snapshotId = source;
      if (name) body.name = name;
      if (idle === "never") body.idleTimeoutSeconds = null;
      if (idle === "custom") body.idleTimeoutSeconds = Number(custom);
      const r = await api<{ id: string }>("POST", "/v1/vms", body);
      onDone(`Created VM ${r.id}`, true);
      setName("");
    } catch (err) {
      onDone(`Create failed: ${err instanceof Error ? err.message : String(err)}`, false);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form className="card create" onSubmit={(e) => void submit(e)} data-testid="create-vm">
      <label>
        From
        <select value={source} onChange={(e) => setSource(e.target.value)} data-testid="create-source">
          <option value="">Base image</option>
          {snapshots.map((s) => (
            <option key={s.snapshotId} value={s.snapshotId}>
              snapshot {s.name ? `${s.name} (${s.snapshotId})` : s.snapshotId}
            </option>
          ))}
        </select>
      </label>
      <label>
        Name
        <input value={name} onChange={(e) => setName(e.target.value)} placeholder="optional" />
      </label>
      <label>
        Idle timeout
        <select value={idle} onChange={(e) => setIdle(e.target.value)} data-testid="create-idle">
          <option value="default">server default</option>
          <option value="never">never suspend</option>
          <option value="custom">seconds…</option>
        </select>
      </label>
      {idle === "custom" && <input type="number" min={1} value={custom} onChange={(e) => setCustom(e.target.value)} aria-label="idle seconds" />}
      <button type="submit" className="primary" disabled={busy} data-testid="create-submit">
        {busy ? "Creating…" : "Create VM"}
      </button>
    </form>
  );
}

/** One VM's page (`#/vms/<id>`): its state and sizing, links to its terminal and files, its preview ports and its services. */
import { api, vmPath, type VmInfo } from "../api";
import { href } from "../router";
import { PortsPanel } from "./Ports";
import { ServicesPanel } from "./Services";
import { usePoll } from "./usePoll";

const POLL_MS = 3000;

export function VmPage({ vmId }: { vmId: string }) {
  const { data: vm, error } = usePoll(() => api<VmInfo>("GET", vmPath(vmId)), POLL_MS);
  return (
    <section>
      <div className="title-row">
        <h2>
          VM · <code>{vmId}</code>
        </h2>
        {vm && (
          <span className={`state state-${vm.state}`} data-testid="vm-state">
            {vm.state}
          </span>
        )}
        <a href={href(["vms", vmId, "terminal"])}>Terminal</a>
        <a href={href(["vms", vmId, "files"])}>Files</a>
        <span className="spacer" />
        <a href={href(["vms"])}>All VMs</a>
      </div>
      {error && <p className="error">{error}</p>}
      {vm && (
        <>
          <p className="muted">
            {vm.name ? `${vm.name} · ` : ""}
            {vm.sizing.vcpuCount} vCPU, {vm.sizing.memSizeMib} MiB memory, {vm.sizing.rootfsSizeMb} MB disk · from {vm.snapshotId ? `snapshot ${vm.snapshotId}` : "the base image"}
          </p>
          <PortsPanel vmId={vmId} />
          <ServicesPanel vmId={vmId} running={vm.state === "running"} />
        </>
      )}
    </section>
  );
}

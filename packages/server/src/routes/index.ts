/**
 * Every route, in registration order. Static paths come before the `{vm_id}` patterns they would
 * otherwise match (`/v1/vms/snapshots` is not a VM id).
 */
import type { App, Deps } from "../context.js";
import * as consoleRoutes from "../console/routes.js";
import * as buildGet from "./build-get.js";
import * as buildPhases from "./build-phases.js";
import * as buildsList from "./builds-list.js";
import * as health from "./health.js";
import * as metrics from "./metrics.js";
import * as ptySessionDelete from "./pty-session-delete.js";
import * as ptySessionsList from "./pty-sessions-list.js";
import * as snapshotDelete from "./snapshot-delete.js";
import * as snapshotGet from "./snapshot-get.js";
import * as snapshotPatch from "./snapshot-patch.js";
import * as snapshotsEnsure from "./snapshots-ensure.js";
import * as snapshotsList from "./snapshots-list.js";
import * as systemdControl from "./systemd-control.js";
import * as systemdServiceCreate from "./systemd-service-create.js";
import * as systemdServiceDelete from "./systemd-service-delete.js";
import * as systemdServiceLogs from "./systemd-service-logs.js";
import * as systemdServiceStatus from "./systemd-service-status.js";
import * as systemdServicesList from "./systemd-services-list.js";
import { registerGlobal, registerVmScoped } from "./unsupported.js";
import * as vmAwait from "./vm-await.js";
import * as vmBuild from "./vm-build.js";
import * as vmDelete from "./vm-delete.js";
import * as vmExecAwait from "./vm-exec-await.js";
import * as vmFilesGet from "./vm-files-get.js";
import * as vmFilesPut from "./vm-files-put.js";
import * as vmFilesRaw from "./vm-files-raw.js";
import * as vmFork from "./vm-fork.js";
import * as vmGet from "./vm-get.js";
import * as vmKill from "./vm-kill.js";
import * as vmOptimize from "./vm-optimize.js";
import * as vmPorts from "./vm-ports.js";
import * as vmSnapshot from "./vm-snapshot.js";
import * as vmStart from "./vm-start.js";
import * as vmStop from "./vm-stop.js";
import * as vmSuspend from "./vm-suspend.js";
import * as vmsCreate from "./vms-create.js";
import * as vmsList from "./vms-list.js";
import * as wsRoutes from "./ws-routes.js";

export const ROUTES: ReadonlyArray<(app: App, deps: Deps) => void> = [
  health.register,
  consoleRoutes.register,
  metrics.register,
  snapshotsEnsure.register,
  buildsList.register,
  buildGet.register,
  buildPhases.register,
  registerGlobal,
  snapshotsList.register,
  snapshotGet.register,
  snapshotPatch.register,
  snapshotDelete.register,
  vmsCreate.register,
  vmsList.register,
  vmGet.register,
  vmDelete.register,
  vmStart.register,
  vmStop.register,
  vmSuspend.register,
  vmKill.register,
  vmAwait.register,
  vmOptimize.register,
  vmExecAwait.register,
  vmFilesGet.register,
  vmFilesPut.register,
  vmFilesRaw.register,
  vmSnapshot.register,
  vmFork.register,
  vmBuild.register,
  vmPorts.register,
  ptySessionsList.register,
  ptySessionDelete.register,
  systemdServicesList.register,
  systemdServiceCreate.register,
  systemdServiceDelete.register,
  systemdServiceStatus.register,
  systemdServiceLogs.register,
  systemdControl.register,
  wsRoutes.register,
  registerVmScoped,
];

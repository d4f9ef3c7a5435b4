import type { Command } from "commander";
import { examples } from "../api.js";
import { registerSnapshotBuild } from "./snapshot-build.js";
import { registerSnapshotCreate } from "./snapshot-create.js";
import { registerSnapshotDelete } from "./snapshot-delete.js";
import { registerSnapshotList } from "./snapshot-list.js";

/** `capsule snapshot ...`: snapshots of VMs (their disks, and with --memory their processes). */
export function registerSnapshot(program: Command): void {
  const snap = program
    .command("snapshot")
    .description("snapshot VMs (disk, or --memory for processes too), build snapshots from specs, list and delete snapshots")
    .addHelpText("after", examples("SNAP=$(capsule snapshot create VM --name after-setup)", "capsule vm create --snapshot $SNAP", "capsule snapshot list --json"));
  registerSnapshotCreate(snap);
  registerSnapshotBuild(snap);
  registerSnapshotList(snap);
  registerSnapshotDelete(snap);
}

import type { Command } from "commander";
import { action, client } from "../api.js";

export function registerSnapshotDelete(snap: Command): void {
  snap
    .command("delete <snapshot...>")
    .alias("rm")
    .description("delete snapshots (VMs booted from them keep working)")
    .action(
      action(async function (this: Command, ids: string[]) {
        const c = client(this);
        for (const id of ids) {
          await c.snapshots.delete({ snapshotId: id });
          process.stdout.write(`${id}\n`);
        }
      }),
    );
}

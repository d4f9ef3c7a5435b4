import type { Command } from "commander";
import { action, client, printJson } from "../api.js";

export function registerSnapshotCreate(snap: Command): void {
  snap
    .command("create <vm>")
    .description("snapshot a VM's disk (the VM keeps running) and print the snapshot id")
    .option("--name <name>", "a label for the snapshot")
    .option("--json", "print JSON {snapshotId, sourceVmId}")
    .action(
      action(async function (this: Command, vmId: string) {
        const o = this.opts<{ name?: string; json?: boolean }>();
        const r = await client(this).vms.ref({ vmId }).snapshot(o.name ? { name: o.name } : {});
        if (o.json) printJson(r);
        else process.stdout.write(`${r.snapshotId}\n`);
      }),
    );
}

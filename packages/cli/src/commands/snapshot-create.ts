import type { Command } from "commander";
import { action, client, examples, printJson } from "../api.js";

/**
 * The snapshot verb, registered as `capsule snapshot create VM` and `capsule vm snapshot VM`:
 * the disk, and with --memory the running processes too.
 */
function addSnapshotCommand(parent: Command, name: string): void {
  parent
    .command(`${name} <vm>`)
    .description("snapshot a VM's disk, and with --memory its running processes (the VM keeps running); print the snapshot id")
    .option("--name <name>", "a label for the snapshot")
    .option("--memory", "also capture the VM's memory: a VM created from the snapshot resumes its processes")
    .option("--json", "print JSON {snapshotId, sourceVmId}")
    .addHelpText("after", examples(`SNAP=$(capsule ${parent.name()} ${name} VM --memory)`, "capsule vm create --snapshot $SNAP"))
    .action(
      action(async function (this: Command, vmId: string) {
        const o = this.opts<{ name?: string; memory?: boolean; json?: boolean }>();
        const r = await client(this).vms.ref({ vmId }).snapshot({ ...(o.name ? { name: o.name } : {}), ...(o.memory ? { memory: true } : {}) });
        if (o.json) printJson(r);
        else process.stdout.write(`${r.snapshotId}\n`);
      }),
    );
}

export function registerSnapshotCreate(snap: Command): void {
  addSnapshotCommand(snap, "create");
}

export function registerVmSnapshot(vm: Command): void {
  addSnapshotCommand(vm, "snapshot");
}

import type { Command } from "commander";
import { action, client } from "../api.js";

export function registerVmDelete(vm: Command): void {
  vm.command("delete <vm...>")
    .alias("rm")
    .description("delete VMs and their disks")
    .action(
      action(async function (this: Command, ids: string[]) {
        const c = client(this);
        for (const id of ids) {
          await c.vms.ref({ vmId: id }).delete();
          process.stdout.write(`${id}\n`);
        }
      }),
    );
}

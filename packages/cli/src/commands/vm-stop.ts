import type { Command } from "commander";
import { action, client } from "../api.js";

export function registerVmStop(vm: Command): void {
  vm.command("stop <vm...>")
    .description("stop VMs (their disks are kept)")
    .action(
      action(async function (this: Command, ids: string[]) {
        const c = client(this);
        for (const id of ids) {
          await c.vms.ref({ vmId: id }).stop();
          process.stdout.write(`${id}\n`);
        }
      }),
    );
}

import type { Command } from "commander";
import { action, client } from "../api.js";

export function registerVmSuspend(vm: Command): void {
  vm.command("suspend <vm...>")
    .description("suspend VMs (any use wakes them)")
    .action(
      action(async function (this: Command, ids: string[]) {
        const c = client(this);
        for (const id of ids) {
          await c.vms.ref({ vmId: id }).suspend();
          process.stdout.write(`${id}\n`);
        }
      }),
    );
}

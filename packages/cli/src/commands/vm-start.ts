import type { Command } from "commander";
import { action, client } from "../api.js";

export function registerVmStart(vm: Command): void {
  vm.command("start <vm...>")
    .description("start stopped or suspended VMs")
    .action(
      action(async function (this: Command, ids: string[]) {
        const c = client(this);
        for (const id of ids) {
          await c.vms.ref({ vmId: id }).start();
          process.stdout.write(`${id}\n`);
        }
      }),
    );
}

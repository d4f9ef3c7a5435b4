import type { Command } from "commander";
import { action, age, client, printJson, printTable } from "../api.js";

export function registerVmList(vm: Command): void {
  vm.command("list")
    .alias("ls")
    .description("list your VMs")
    .option("--json", "print JSON ({vms: [...], totalCount, ...})")
    .action(
      action(async function (this: Command) {
        const r = await client(this).vms.list();
        if (this.opts<{ json?: boolean }>().json) return printJson(r);
        printTable(
          ["ID", "NAME", "STATE", "CREATED", "SNAPSHOT", "IDLE TIMEOUT"],
          r.vms.map((v) => [v.id, v.name, v.state, age(v.createdAt), v.snapshotId, v.idleTimeoutSeconds === null ? "none" : `${v.idleTimeoutSeconds}s`]),
        );
      }),
    );
}

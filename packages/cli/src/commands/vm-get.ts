import type { Command } from "commander";
import { action, client, printJson } from "../api.js";

export function registerVmGet(vm: Command): void {
  vm.command("get <vm>")
    .description("show a VM's state and sizing")
    .option("--json", "print JSON")
    .action(
      action(async function (this: Command, id: string) {
        const { info } = await client(this).vms.get({ vmId: id });
        if (this.opts<{ json?: boolean }>().json) return printJson(info);
        const rows: Array<[string, string]> = [
          ["id", info.id],
          ["name", info.name ?? "-"],
          ["state", info.state],
          ["created", info.createdAt],
          ["snapshot", info.snapshotId ?? "-"],
          ["idle timeout", info.idleTimeoutSeconds === null ? "none" : `${info.idleTimeoutSeconds}s`],
          ["cpus", String(info.sizing.vcpuCount)],
          ["memory", `${info.sizing.memSizeMib} MiB`],
          ["disk", `${info.sizing.rootfsSizeMb} MB`],
        ];
        for (const [k, v] of rows) process.stdout.write(`${`${k}:`.padEnd(14)}${v}\n`);
      }),
    );
}

import type { Command } from "commander";
import { action, age, bytes, client, printJson, printTable } from "../api.js";

export function registerSnapshotList(snap: Command): void {
  snap
    .command("list")
    .alias("ls")
    .description("list your snapshots")
    .option("--json", "print JSON ({snapshots: [...], totalCount, ...})")
    .action(
      action(async function (this: Command) {
        const r = await client(this).snapshots.list();
        if (this.opts<{ json?: boolean }>().json) return printJson(r);
        printTable(
          ["ID", "NAME", "SOURCE VM", "CREATED", "HOLDS", "SIZE"],
          r.snapshots.map((s) => [s.snapshotId, s.name, s.sourceVmId, age(s.createdAt), s.memory ? "memory+disk" : "disk", bytes(s.sizeBytes)]),
        );
      }),
    );
}

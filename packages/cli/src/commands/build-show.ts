import type { Command } from "commander";
import { action, age, client, printJson, printTable } from "../api.js";

export function registerBuildShow(build: Command): void {
  build
    .command("show <build>")
    .description("a build's state, snapshot, failure reason and phases")
    .option("--json", "print JSON {build, phases} (phases with their logs)")
    .action(
      action(async function (this: Command, buildId: string) {
        const handle = client(this).builds.ref({ buildId });
        const [info, phases] = await Promise.all([handle.get(), handle.phases()]);
        if (this.opts<{ json?: boolean }>().json) return printJson({ build: info, phases });
        const field = (k: string, v: string | null) => process.stdout.write(`${`${k}:`.padEnd(10)}${v ?? "-"}\n`);
        field("build", info.buildId);
        field("state", info.state);
        field("snapshot", info.snapshotId);
        field("base", info.baseSnapshotId ?? "base image");
        field("started", `${info.startedAt} (${age(info.startedAt)})`);
        field("finished", info.finishedAt);
        if (info.failureReason) field("failure", info.failureReason);
        process.stdout.write("\n");
        const took = (from: string, to: string | null) => (to ? `${((Date.parse(to) - Date.parse(from)) / 1000).toFixed(1)}s` : "-");
        printTable(
          ["PHASE", "STATE", "TIME", "LOG"],
          info.plannedPhases.map((name) => {
            const p = phases.find((x) => x.name === name);
            return [name, p?.state ?? "pending", p ? took(p.startedAt, p.finishedAt) : "", p ? `${p.log.split("\n").filter(Boolean).length} lines` : ""];
          }),
        );
      }),
    );
}

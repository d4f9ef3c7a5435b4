import type { Command } from "commander";
import { action, CliError, client, EXIT } from "../api.js";

export function registerBuildLogs(build: Command): void {
  build
    .command("logs <build>")
    .description("print the logs of a build's phases (the last 64 KiB of each)")
    .option("--phase <name>", "only this phase (users, files, aptDeps, systemd, workdir, snapshot)")
    .action(
      action(async function (this: Command, buildId: string) {
        const { phase } = this.opts<{ phase?: string }>();
        const phases = await client(this).builds.ref({ buildId }).phases();
        const chosen = phase === undefined ? phases : phases.filter((p) => p.name === phase);
        if (phase !== undefined && chosen.length === 0) {
          throw new CliError("PHASE_NOT_FOUND", `build ${buildId} ran no phase ${JSON.stringify(phase)}; it ran: ${phases.map((p) => p.name).join(", ") || "none"}`, EXIT.NOT_FOUND);
        }
        for (const p of chosen) {
          // With several phases each gets a header; one phase's log is printed bare (for pipes).
          if (phase === undefined) process.stdout.write(`=== ${p.name} (${p.state}) ===\n`);
          process.stdout.write(p.log.endsWith("\n") || p.log === "" ? p.log : `${p.log}\n`);
        }
      }),
    );
}

import type { Command } from "commander";
import { examples } from "../api.js";
import { registerBuildLogs } from "./build-logs.js";
import { registerBuildShow } from "./build-show.js";

/** `capsule build ...`: the builds of declarative snapshots (`capsule snapshot build`). */
export function registerBuild(program: Command): void {
  const build = program
    .command("build")
    .description("show declarative snapshot builds and their phases' logs")
    .addHelpText("after", examples("capsule snapshot build --spec spec.json", "capsule build show bld-…", "capsule build logs bld-… --phase aptDeps"));
  registerBuildShow(build);
  registerBuildLogs(build);
}

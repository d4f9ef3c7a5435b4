import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import { CapsuleError, VmSpec, type VmSpecJson } from "@capsule/sdk";
import { action, CliError, client, EXIT, printJson } from "../api.js";
import { PhaseDisplay, tail, withProgress } from "./build-progress.js";

/** The spec file's layers, each given the command line's discriminator and skip-cache (every layer: the whole chain is another snapshot, or rebuilt). */
function withFlags(json: VmSpecJson, o: { discriminator?: string; skipCache?: boolean }): VmSpecJson {
  return {
    ...json,
    ...(o.discriminator !== undefined ? { discriminator: o.discriminator } : {}),
    ...(o.skipCache ? { skipCache: true } : {}),
    ...(json.snapshot ? { snapshot: withFlags(json.snapshot, o) } : {}),
  };
}

async function readSpec(file: string): Promise<VmSpecJson> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(file, "utf8"));
  } catch (err) {
    throw new CliError("BAD_SPEC", `cannot read ${file} as JSON: ${(err as Error).message}`, EXIT.USAGE);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new CliError("BAD_SPEC", `${file} must hold a JSON object (a spec layer)`, EXIT.USAGE);
  return parsed as VmSpecJson;
}

export function registerSnapshotBuild(snap: Command): void {
  snap
    .command("build")
    .description("build a snapshot from a declarative spec (or reuse the cached one) and print its id; phases are shown on stderr")
    .requiredOption("--spec <file>", "JSON spec: aptDeps, additionalFiles, users, groups, workdir, systemd.services (exec or bash), runCommands; snapshot nests the layer it builds on")
    .option("--discriminator <value>", "another snapshot for the same content (applied to every layer)")
    .option("--skip-cache", "build even when a cached snapshot exists (every layer)")
    .option("--name <name>", "a label for the snapshot")
    .option("--json", "print JSON {snapshotId, buildId, templateHash, cached}")
    .action(
      action(async function (this: Command) {
        const o = this.opts<{ spec: string; discriminator?: string; skipCache?: boolean; name?: string; json?: boolean }>();
        const spec = VmSpec.fromJSON(withFlags(await readSpec(o.spec), o));
        const capsule = client(this);
        const failedBuild = (e: unknown) => (e instanceof CapsuleError && typeof e.body?.buildId === "string" ? e.body.buildId : undefined);
        try {
          const r = await withProgress(capsule, new PhaseDisplay(process.stderr), () => capsule.snapshots.ensure({ spec, ...(o.name ? { name: o.name } : {}) }), (s) =>
            s.value ? (s.value.cached ? undefined : s.value.buildId) : failedBuild(s.error),
          );
          if (r.cached) process.stderr.write(`cached: build ${r.buildId} made this snapshot; nothing was built\n`);
          if (o.json) printJson({ snapshotId: r.snapshotId, buildId: r.buildId, templateHash: r.templateHash, cached: r.cached });
          else process.stdout.write(`${r.snapshotId}\n`);
        } catch (err) {
          const buildId = failedBuild(err);
          if (buildId === undefined) throw err;
          const phase = await capsule.builds.ref({ buildId }).failedPhase();
          if (phase) process.stderr.write(`--- phase ${phase.name} failed; the end of its log ---\n${tail(phase.log)}\n---\n`);
          throw err;
        }
      }),
    );
}

import type { Command } from "commander";
import { buildClaudeSnapshot } from "@capsule/sdk";
import { action, client, examples, printJson } from "../api.js";

/** `capsule claude snapshot`: builds (or reuses) the offline Claude Code snapshot; prints its id. */
export function registerClaudeSnapshot(claude: Command): void {
  claude
    .command("snapshot")
    .description("build the Claude Code snapshot from the npm registry (no internet needed in the VM); reused per version")
    .option("--claude-version <v>", "Claude Code version (env CAPSULE_CLAUDE_CODE_VERSION; default the pinned one)")
    .option("--user <name>", "non-root user owning its home and the work dir", "claude")
    .option("--dir <dir>", "work directory, trusted in ~/.claude.json", "/srv/app")
    .option("--approve-key", "pre-approve $ANTHROPIC_API_KEY (its last 20 chars) in ~/.claude.json")
    .option("--cache-dir <dir>", "host cache of fetched binaries (env CAPSULE_CLAUDE_CODE_CACHE)")
    .option("--force", "build a new snapshot even when one exists for this version")
    .option("--json", "print the snapshot as JSON")
    .addHelpText("after", examples("SNAP=$(capsule claude snapshot)", "capsule claude snapshot --claude-version 2.1.332 --json", 'capsule claude "fix the tests" --snapshot $SNAP --autonomous'))
    .action(
      action(async function (this: Command) {
        const o = this.opts<{ claudeVersion?: string; user: string; dir: string; approveKey?: boolean; cacheDir?: string; force?: boolean; json?: boolean }>();
        const apiKey = o.approveKey ? process.env.ANTHROPIC_API_KEY : undefined;
        if (o.approveKey && !apiKey) this.error("--approve-key needs ANTHROPIC_API_KEY in the environment", { exitCode: 2 });
        const snap = await buildClaudeSnapshot(client(this), {
          user: o.user,
          workDir: o.dir,
          ...(o.claudeVersion ? { version: o.claudeVersion } : {}),
          ...(apiKey ? { apiKey } : {}),
          ...(o.cacheDir ? { cacheDir: o.cacheDir } : {}),
          ...(o.force ? { force: true } : {}),
          onProgress: (m) => process.stderr.write(`[capsule: ${m}]\n`),
        });
        if (o.json) printJson(snap);
        else process.stdout.write(`${snap.snapshotId}\n`);
      }),
    );
}

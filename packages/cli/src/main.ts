#!/usr/bin/env node
/** The `capsule` command. One verb per file under commands/. */
import { Command, CommanderError } from "commander";
import { EXIT, EXIT_CODES_HELP } from "./api.js";
import { registerClaude } from "./commands/claude.js";
import { registerImage } from "./commands/image.js";
import { registerKeys } from "./commands/keys.js";
import { registerServe } from "./commands/serve.js";
import { registerSnapshot } from "./commands/snapshot.js";
import { registerVm } from "./commands/vm.js";

const program = new Command("capsule").description("Capsule: self-hosted sandboxes for AI agents").showHelpAfterError();
// API verbs (vm, snapshot) connect with these, or CAPSULE_API_URL / CAPSULE_API_KEY (FREESTYLE_* too).
program
  .option("--api-url <url>", "Capsule server URL (env CAPSULE_API_URL, then FREESTYLE_API_URL)")
  .option("--api-key <key>", "API key (env CAPSULE_API_KEY, then FREESTYLE_API_KEY)")
  .addHelpText("after", EXIT_CODES_HELP)
  .exitOverride();
registerServe(program);
registerKeys(program);
registerVm(program);
registerSnapshot(program);
registerImage(program);
registerClaude(program);
try {
  await program.parseAsync();
} catch (err) {
  if (!(err instanceof CommanderError)) throw err;
  // Help and --version exit 0; every other parse error is a usage error.
  process.exitCode = err.exitCode === 0 ? EXIT.OK : err.exitCode === 1 ? EXIT.USAGE : err.exitCode;
}

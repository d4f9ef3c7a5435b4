/**
 * The `capsule` command tree. One verb per file under commands/. Only the group named on the
 * command line is imported (`capsule vm list` loads the vm verbs and the SDK, nothing of
 * `serve`, `keys` or `image`); without one (`capsule --help`, a typo) every group is.
 * @module
 */
import { Command, CommanderError } from "commander";
import { EXIT, EXIT_CODES_HELP } from "./api.js";
import { groupOf } from "./argv.js";

type Register = (program: Command) => void;

/** The top-level groups, in `capsule --help` order. */
const GROUPS: Record<string, () => Promise<Register>> = {
  serve: async () => (await import("./commands/serve.js")).registerServe,
  keys: async () => (await import("./commands/keys.js")).registerKeys,
  vm: async () => (await import("./commands/vm.js")).registerVm,
  snapshot: async () => (await import("./commands/snapshot.js")).registerSnapshot,
  build: async () => (await import("./commands/build.js")).registerBuild,
  image: async () => (await import("./commands/image.js")).registerImage,
  claude: async () => (await import("./commands/claude.js")).registerClaude,
};

const program = new Command("capsule").description("Capsule: self-hosted sandboxes for AI agents").showHelpAfterError();
// API verbs (vm, snapshot) connect with these, or CAPSULE_API_URL / CAPSULE_API_KEY (FREESTYLE_* too).
program
  .option("--api-url <url>", "Capsule server URL (env CAPSULE_API_URL, then FREESTYLE_API_URL)")
  .option("--api-key <key>", "API key (env CAPSULE_API_KEY, then FREESTYLE_API_KEY)")
  .addHelpText("after", EXIT_CODES_HELP)
  .exitOverride();
const named = groupOf(process.argv.slice(2));
const wanted = named !== undefined && Object.hasOwn(GROUPS, named) ? [named] : Object.keys(GROUPS);
for (const register of await Promise.all(wanted.map((g) => GROUPS[g]!()))) register(program);
try {
  await program.parseAsync();
} catch (err) {
  if (!(err instanceof CommanderError)) throw err;
  // Help and --version exit 0; every other parse error is a usage error.
  process.exitCode = err.exitCode === 0 ? EXIT.OK : err.exitCode === 1 ? EXIT.USAGE : err.exitCode;
}

import type { Command } from "commander";
import { registerKeysCreate } from "./keys-create.js";
import { registerKeysList } from "./keys-list.js";
import { registerKeysRevoke } from "./keys-revoke.js";

/** `capsule keys ...`: works on the data dir's database directly, also while the server runs. */
export function registerKeys(program: Command): void {
  const keys = program.command("keys").description("manage API keys").option("--data-dir <dir>", "data directory (env CAPSULE_DATA_DIR; default /var/lib/capsule)");
  registerKeysCreate(keys);
  registerKeysList(keys);
  registerKeysRevoke(keys);
}

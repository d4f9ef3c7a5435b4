import type { Command } from "commander";
import { withKeys } from "./store.js";

export function registerKeysRevoke(keys: Command): void {
  keys
    .command("revoke <id>")
    .description("revoke an API key by id (or the full key)")
    .action(async function (this: Command, id: string) {
      if (!(await withKeys(this, (k) => k.revokeKey(id)))) {
        process.stderr.write(`no active key ${id}\n`);
        process.exitCode = 1;
      } else process.stdout.write(`revoked ${id}\n`);
    });
}

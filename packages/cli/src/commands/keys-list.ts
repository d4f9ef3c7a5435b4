import type { Command } from "commander";
import { withKeys } from "./store.js";

export function registerKeysList(keys: Command): void {
  keys
    .command("list")
    .description("list API keys (ids, never the secrets)")
    .option("--json", "print JSON")
    .action(async function (this: Command, o: { json?: boolean }) {
      const list = await withKeys(this, (k) => k.listKeys());
      if (o.json) process.stdout.write(`${JSON.stringify(list)}\n`);
      else for (const k of list) process.stdout.write(`${k.id}  ${k.accountName}  created ${k.createdAt}${k.revokedAt ? `  REVOKED ${k.revokedAt}` : ""}\n`);
    });
}

import type { Command } from "commander";
import { withKeys } from "./store.js";

export function registerKeysCreate(keys: Command): void {
  keys
    .command("create")
    .description("create an API key (printed once; only its hash is stored)")
    .option("--account <name>", "account the key belongs to (created if new)", "default")
    .option("--json", "print JSON: {key, id, account}")
    .action(async function (this: Command, o: { account: string; json?: boolean }) {
      const { key, info } = await withKeys(this, (k) => k.createKey(o.account));
      if (o.json) process.stdout.write(`${JSON.stringify({ key, id: info.id, account: info.accountName })}\n`);
      else process.stdout.write(`${key}\n(key ${info.id} for account ${info.accountName}; it is shown only this once)\n`);
    });
}

import type { Command } from "commander";
import { action, client } from "../api.js";

/** A share link's lifetime from `30s`, `15m`, `2h`, `7d` or plain seconds. */
export function parseTtl(text: string): number {
  const m = /^([0-9]+)([smhd]?)$/.exec(text.trim());
  if (!m) throw new Error(`--share takes a duration such as 30s, 15m, 2h or 7d, got ${JSON.stringify(text)}`);
  const unit = { "": 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as "" | "s" | "m" | "h" | "d"];
  return Number(m[1]) * unit;
}

export function registerVmUrl(vm: Command): void {
  vm.command("url <vm> <port>")
    .description("print a VM port's preview URL (private: open it with the API key); with --share a link anyone may open until it expires; --shares lists the port's live links, --revoke ends one")
    .option("--share <ttl>", "mint a share link that works this long (30s, 15m, 2h, 7d)")
    .option("--shares", "list the port's live share links (id and expiry)")
    .option("--revoke <share-id>", "revoke one of the port's share links (its open connections close)")
    .action(
      action(async function (this: Command, id: string, portText: string) {
        const port = Number(portText);
        if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`PORT must be a TCP port (1-65535), got ${JSON.stringify(portText)}`);
        const ref = client(this).vms.ref({ vmId: id });
        const opts = this.opts<{ share?: string; shares?: boolean; revoke?: string }>();
        if ([opts.share !== undefined, opts.shares === true, opts.revoke !== undefined].filter(Boolean).length > 1) throw new Error("give one of --share, --shares and --revoke");
        if (opts.shares) {
          for (const s of await ref.shares(port)) process.stdout.write(`${s.id}\t${s.expiresAt}\n`);
          return;
        }
        if (opts.revoke !== undefined) {
          await ref.revokeShare(port, opts.revoke);
          return void process.stderr.write(`share ${opts.revoke} revoked\n`);
        }
        if (opts.share === undefined) return void process.stdout.write(`${await ref.previewUrl(port)}\n`);
        const share = await ref.share(port, { ttl: parseTtl(opts.share) });
        process.stdout.write(`${share.url}\n`);
        process.stderr.write(`share ${share.id} expires ${share.expiresAt}\n`);
      }),
    );
}

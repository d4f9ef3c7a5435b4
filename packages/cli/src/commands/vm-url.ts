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
    .description("print a VM port's preview URL (private: open it with the API key), or with --share a link anyone may open until it expires")
    .option("--share <ttl>", "mint a share link that works this long (30s, 15m, 2h, 7d)")
    .action(
      action(async function (this: Command, id: string, portText: string) {
        const port = Number(portText);
        if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`PORT must be a TCP port (1-65535), got ${JSON.stringify(portText)}`);
        const ref = client(this).vms.ref({ vmId: id });
        const ttl = this.opts<{ share?: string }>().share;
        if (ttl === undefined) return void process.stdout.write(`${await ref.previewUrl(port)}\n`);
        const share = await ref.share(port, { ttl: parseTtl(ttl) });
        process.stdout.write(`${share.url}\n`);
        process.stderr.write(`share ${share.id} expires ${share.expiresAt}\n`);
      }),
    );
}

import fs from "node:fs";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import type { Command } from "commander";
import { action, client, examples, EXIT } from "../api.js";

/** `VM:/abs/path` → {vm, path}; anything else is a host path. */
function remote(arg: string): { vm: string; path: string } | undefined {
  const m = /^([A-Za-z0-9][A-Za-z0-9._-]*):(\/.*)$/.exec(arg);
  return m ? { vm: m[1] as string, path: m[2] as string } : undefined;
}

export function registerVmCp(vm: Command): void {
  vm.command("cp <source> <dest>")
    .description("copy a file between the host and a VM (either direction), streamed")
    .option("--user <name>", "read/write in the VM as this Linux user (default root)")
    .addHelpText(
      "after",
      `\nOne side is VM:/absolute/path. A destination ending in / (or an existing host directory) keeps the file name. - is stdin/stdout. New VM files keep the host file's mode.${examples(
        "capsule vm cp ./data.bin VM:/root/data.bin",
        "capsule vm cp VM:/var/log/app.log ./",
        "capsule vm cp --user claude notes.md VM:/home/claude/",
        "capsule vm cp VM:/etc/os-release -",
      )}`,
    )
    .action(
      action(async function (this: Command, source: string, dest: string) {
        const o = this.opts<{ user?: string }>();
        const src = remote(source);
        const dst = remote(dest);
        if ((src && dst) || (!src && !dst)) this.error("exactly one of source and dest must be VM:/path", { exitCode: EXIT.USAGE });
        const c = client(this);
        const handle = (id: string) => (o.user ? c.vms.ref({ vmId: id }).user({ username: o.user }) : c.vms.ref({ vmId: id }));
        if (dst) {
          const target = dst.path.endsWith("/") ? dst.path + path.basename(source) : dst.path;
          if (source === "-") return handle(dst.vm).fs.writeFile(target, process.stdin);
          const st = fs.statSync(source);
          if (!st.isFile()) this.error(`${source} is not a regular file`, { exitCode: EXIT.FAILURE });
          await handle(dst.vm).fs.writeFile(target, fs.createReadStream(source), { mode: st.mode & 0o777 });
          return;
        }
        if (!src) return;
        const input = await handle(src.vm).fs.createReadStream(src.path);
        if (dest === "-") {
          await pipeline(input, process.stdout);
          return;
        }
        let target = dest;
        if (dest.endsWith("/") || (fs.existsSync(dest) && fs.statSync(dest).isDirectory())) target = path.join(dest, path.posix.basename(src.path));
        await pipeline(input, fs.createWriteStream(target));
      }),
    );
}

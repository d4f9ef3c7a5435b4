import type { Command } from "commander";
import { action, client, examples, printJson } from "../api.js";

export function registerVmCreate(vm: Command): void {
  vm.command("create")
    .description("create a VM (from the base image, or a snapshot) and print its id")
    .option("--snapshot <id>", "boot from this snapshot (one with memory resumes its processes)")
    .option("--no-memory", "from a memory snapshot: boot its disk only, processes afresh")
    .option("--idle-timeout <seconds>", "suspend after this many idle seconds, or none (default: the server's, 300 s)")
    .option("--user <name>", "create this Linux user (repeatable)", (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option("--name <name>", "a label for the VM")
    .option("--json", "print the server's answer as JSON")
    .addHelpText("after", examples("capsule vm create", "capsule vm create --snapshot SNAP --idle-timeout none", "VM=$(capsule vm create --user claude --user dev)"))
    .action(
      action(async function (this: Command) {
        const o = this.opts<{ snapshot?: string; memory: boolean; idleTimeout?: string; user: string[]; name?: string; json?: boolean }>();
        let idle: number | null | undefined;
        if (o.idleTimeout !== undefined) {
          idle = o.idleTimeout === "none" ? null : Number(o.idleTimeout);
          if (idle !== null && (!Number.isInteger(idle) || idle < 1)) this.error("--idle-timeout must be a whole number of seconds or none", { exitCode: 2 });
        }
        const r = await client(this).vms.create({
          ...(o.snapshot ? { snapshotId: o.snapshot } : {}),
          ...(o.memory ? {} : { memory: false }),
          ...(idle !== undefined ? { idleTimeoutSeconds: idle } : {}),
          ...(o.user.length ? { users: o.user.map((name) => ({ name })) } : {}),
          ...(o.name ? { name: o.name } : {}),
        });
        if (o.json) printJson({ id: r.id, domains: r.domains, snapshotId: r.snapshotId });
        else process.stdout.write(`${r.id}\n`);
      }),
    );
}

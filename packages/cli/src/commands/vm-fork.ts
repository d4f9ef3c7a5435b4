import type { Command } from "commander";
import { action, client, examples, printJson } from "../api.js";

/** Most copies one fork asks for (the API's own bound). */
const MAX_FORKS = 16;

export function registerVmFork(vm: Command): void {
  vm.command("fork <vm>")
    .description("copy a running VM, its processes too where it can be checkpointed (the VM keeps running); print the copies' ids")
    .option("--count <n>", `how many copies (1 to ${MAX_FORKS})`, "1")
    .option("--memory", "each copy resumes the VM's processes, or fail (default: where the VM can be checkpointed)")
    .option("--no-memory", "each copy boots the VM's current disk afresh")
    .option("--json", "print JSON {vmId, forks: [{id}]}")
    .addHelpText("after", examples("capsule vm fork VM --count 3", "capsule vm fork VM --no-memory"))
    .action(
      action(async function (this: Command, vmId: string) {
        const o = this.opts<{ count: string; memory?: boolean; json?: boolean }>();
        const count = Number(o.count);
        if (!Number.isInteger(count) || count < 1 || count > MAX_FORKS) this.error(`--count must be a whole number from 1 to ${MAX_FORKS}`, { exitCode: 2 });
        // With both --memory and --no-memory defined, commander leaves memory undefined unless one is given.
        const r = await client(this).vms.ref({ vmId }).fork({ count, ...(o.memory !== undefined ? { memory: o.memory } : {}) });
        if (o.json) printJson({ vmId, forks: r.forks.map((f) => ({ id: f.vmId })) });
        else for (const f of r.forks) process.stdout.write(`${f.vmId}\n`);
      }),
    );
}

import type { Command } from "commander";
import { action, examples, printJson, printTable } from "../api.js";
import { registerVmServiceControl } from "./vm-service-control.js";
import { registerVmServiceCreate } from "./vm-service-create.js";
import { serviceVm } from "./vm-service-handle.js";

/** `capsule vm service ...`: services the VM's agent supervises (Freestyle's vm.systemd). */
export function registerVmService(vm: Command): void {
  const svc = vm
    .command("service")
    .description("services in a VM: long-running or one-shot commands that start at every boot")
    .option("--user <name>", "act as this Linux user: create services that run as it, see only its services")
    .addHelpText(
      "after",
      examples(
        "capsule vm service create VM dev --cwd /srv/app --restart on-failure -- npm run dev",
        "capsule vm service create VM setup --oneshot -- 'apt-get install -y jq'",
        "capsule vm service status VM web",
        "capsule vm service logs VM web --lines 50",
        "capsule vm service restart VM web",
      ),
    );
  registerVmServiceCreate(svc);
  svc
    .command("list <vm>")
    .alias("ls")
    .description("list the VM's services and their states")
    .option("--json", "print JSON ({services: [...]})")
    .action(
      action(async function (this: Command, id: string) {
        const r = await serviceVm(this, id).systemd.list();
        if (this.opts<{ json?: boolean }>().json) return printJson(r);
        printTable(
          ["NAME", "ACTIVE", "SUB", "USER", "ENABLED", "RESULT", "RESTARTS"],
          r.services.map((s) => [s.name, s.activeState, s.subState, s.user, s.enabled ? "yes" : "no", s.result, s.restarts]),
        );
      }),
    );
  svc
    .command("status <vm> <service>")
    .description("a service's state (systemd's activeState/subState)")
    .option("--json", "print JSON")
    .action(
      action(async function (this: Command, id: string, name: string) {
        const s = await serviceVm(this, id).systemd.getStatus({ serviceId: name });
        if (this.opts<{ json?: boolean }>().json) return printJson(s);
        process.stdout.write(`${s.name}.service  ${s.activeState} (${s.subState})  result ${s.result}  user ${s.user}  ${s.enabled ? "enabled" : "disabled"}  pid ${s.pid ?? "-"}  restarts ${s.restarts}\n`);
      }),
    );
  svc
    .command("logs <vm> <service>")
    .description("a service's newest log lines, oldest first")
    .option("-n, --lines <n>", "how many lines (default 100, at most 1000)")
    .option("--since <time>", "only lines at or after this time (ISO 8601)")
    .option("--json", "print JSON ({logs: [...]})")
    .action(
      action(async function (this: Command, id: string, name: string) {
        const o = this.opts<{ lines?: string; since?: string; json?: boolean }>();
        const r = await serviceVm(this, id).systemd.getLogs({ serviceId: name, ...(o.lines ? { lines: Number(o.lines) } : {}), ...(o.since ? { since: o.since } : {}) });
        if (o.json) return printJson(r);
        for (const l of r.logs) process.stdout.write(`${l.timestamp} ${l.message}\n`);
      }),
    );
  registerVmServiceControl(svc);
}

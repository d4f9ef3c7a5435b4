import type { Command } from "commander";
import { action, CliError, EXIT } from "../api.js";
import { serviceVm } from "./vm-service-handle.js";

/** `vm service start|stop|restart VM SERVICE...` and `vm service delete VM SERVICE...`. */
export function registerVmServiceControl(svc: Command): void {
  for (const [verb, description] of [
    ["start", "start services (each answers once it is up)"],
    ["stop", "stop services: SIGTERM to their process groups, SIGKILL after the grace"],
    ["restart", "stop, then start services"],
  ] as const) {
    svc
      .command(`${verb} <vm> <service...>`)
      .description(description)
      .action(
        action(async function (this: Command, id: string, names: string[]) {
          const { results } = await serviceVm(this, id).systemd[verb]({ services: names.map((n) => ({ id: n })) });
          for (const r of results) process.stdout.write(`${r.message}\n`);
          const failed = results.filter((r) => !r.success).map((r) => r.serviceId);
          if (failed.length > 0) throw new CliError("SERVICE_FAILED", `${verb} did not succeed for ${failed.join(", ")}`, EXIT.FAILURE);
        }),
      );
  }
  svc
    .command("delete <vm> <service...>")
    .alias("rm")
    .description("stop services and remove them with their logs")
    .action(
      action(async function (this: Command, id: string, names: string[]) {
        const vm = serviceVm(this, id);
        for (const name of names) {
          await vm.systemd.delete({ serviceId: name });
          process.stdout.write(`${name}\n`);
        }
      }),
    );
}

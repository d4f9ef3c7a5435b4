import type { Command } from "commander";
import type { SystemdServiceSpec } from "@capsule/sdk";
import { action, EXIT } from "../api.js";
import { execCommandLine } from "./vm-exec.js";
import { serviceVm } from "./vm-service-handle.js";

const repeatable = (v: string, prev: string[]): string[] => [...prev, v];

/** `capsule vm service create VM NAME [options] -- COMMAND...`. */
export function registerVmServiceCreate(svc: Command): void {
  svc
    .command("create <vm> <name> <command...>")
    .description("define a service (kept in the VM: it survives restarts and snapshots) and start it")
    .option("--oneshot", "run once to completion (default: a long-running service)")
    .option("--restart <policy>", "restart policy: no, on-failure, always, on-abnormal (default no)")
    .option("--restart-sec <seconds>", "delay before a restart")
    .option("--run-as <name>", "the Linux user it runs as (default --user, else root)")
    .option("--group <name>", "the Linux group it runs in")
    .option("--cwd <dir>", "working directory (absolute; default /)")
    .option("-e, --env <KEY=VALUE>", "set an environment variable (repeatable)", repeatable, [] as string[])
    .option("--after <unit>", "start after this service (repeatable)", repeatable, [] as string[])
    .option("--requires <unit>", "start this service with it, stop with it (repeatable)", repeatable, [] as string[])
    .option("--timeout <seconds>", "oneshot: its time limit; both: the stop grace")
    .option("--disabled", "only define it: not started now nor at boot")
    .addHelpText("after", "\nThe command words are as for `capsule vm exec`: one word is a shell command line, several a program and its arguments.\n")
    .action(
      action(async function (this: Command, id: string, name: string, words: string[]) {
        const o = this.opts<{ oneshot?: boolean; restart?: string; restartSec?: string; runAs?: string; group?: string; cwd?: string; env: string[]; after: string[]; requires: string[]; timeout?: string; disabled?: boolean }>();
        const env: Record<string, string> = {};
        for (const kv of o.env) {
          const i = kv.indexOf("=");
          if (i < 1) this.error(`--env wants KEY=VALUE, got ${JSON.stringify(kv)}`, { exitCode: EXIT.USAGE });
          env[kv.slice(0, i)] = kv.slice(i + 1);
        }
        const policies = ["no", "on-failure", "always", "on-abnormal"] as const;
        const policy = policies.find((p) => p === o.restart);
        if (o.restart !== undefined && policy === undefined) this.error(`--restart is one of ${policies.join(", ")}`, { exitCode: EXIT.USAGE });
        const spec: SystemdServiceSpec = {
          name,
          mode: o.oneshot ? "oneshot" : "service",
          exec: [execCommandLine(words)],
          enable: !o.disabled,
          ...(Object.keys(env).length ? { env } : {}),
          ...(o.runAs ? { user: o.runAs } : {}),
          ...(o.group ? { group: o.group } : {}),
          ...(o.cwd ? { workdir: o.cwd } : {}),
          ...(o.after.length ? { after: o.after } : {}),
          ...(o.requires.length ? { requires: o.requires } : {}),
          ...(o.timeout ? { timeoutSec: Number(o.timeout) } : {}),
          ...(policy ? { restartPolicy: { policy, ...(o.restartSec ? { restartSec: Number(o.restartSec) } : {}) } } : {}),
        };
        const r = await serviceVm(this, id).systemd.create(spec);
        process.stdout.write(`${r.message}\n`);
      }),
    );
}

import type { Command } from "commander";
import { shellJoin, shq } from "@capsule/contract/shell";
import { buildClaudeSnapshot, claudeEnv, type Vm } from "@capsule/sdk";
import { action, client, examples, EXIT } from "../api.js";
import { attachTerminal } from "../terminal.js";
import { registerClaudeSnapshot } from "./claude-snapshot.js";

interface ClaudeOpts {
  snapshot?: string;
  vm?: string;
  user: string;
  dir: string;
  autonomous?: boolean;
  interactive?: boolean;
  keep?: boolean;
  model?: string;
}

/**
 * `capsule claude "<prompt>"`: Claude Code in a VM, its output streamed (over `vm.spawn`);
 * `--interactive` attaches a terminal running its UI. ANTHROPIC_* and CLAUDE_CODE_* variables of
 * this environment are passed to it.
 */
export function registerClaude(program: Command): void {
  const claude = program
    .command("claude")
    .description("run Claude Code in a VM: a one-off or autonomous task (output streamed), or an interactive terminal")
    .argument("[prompt]", "the task (claude -p); omit with --interactive")
    .option("--snapshot <id>", "boot a fresh VM from this snapshot (default: the Claude Code snapshot, built if missing)")
    .option("--vm <id>", "run in this existing VM instead of a fresh one")
    .option("--user <name>", "Linux user running Claude Code", "claude")
    .option("--dir <dir>", "working directory", "/srv/app")
    .option("--autonomous", "never stop to ask (--dangerously-skip-permissions; refused as root)")
    .option("-i, --interactive", "attach a terminal running Claude Code's UI (detach with Ctrl-] d)")
    .option("--model <model>", "model name passed to Claude Code")
    .option("--keep", "keep the fresh VM afterwards (its id is printed to stderr)")
    .addHelpText(
      "after",
      `\nThe API key and endpoint come from this environment: ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL and any
other ANTHROPIC_* / CLAUDE_CODE_* variable are passed to Claude Code in the VM.${examples(
        "capsule claude snapshot",
        'capsule claude "Write a haiku about sandboxes"',
        'capsule claude "Turn this Vite app into a cookie-clicker game" --autonomous --keep',
        'capsule claude "add tests" --vm VM --dir /srv/app --autonomous',
        "capsule claude --interactive --vm VM",
      )}`,
    )
    .action(
      action(async function (this: Command, prompt: string | undefined) {
        const o = this.opts<ClaudeOpts>();
        if (!o.interactive && !prompt) this.error("a prompt is required (or --interactive)", { exitCode: EXIT.USAGE });
        if (o.snapshot && o.vm) this.error("--snapshot and --vm exclude each other", { exitCode: EXIT.USAGE });
        if (!o.dir.startsWith("/")) this.error("--dir must be absolute", { exitCode: EXIT.USAGE });
        const c = client(this);
        let vm: Vm;
        let fresh = false;
        if (o.vm) vm = c.vms.ref({ vmId: o.vm });
        else {
          const snapshotId = o.snapshot ?? (await buildClaudeSnapshot(c, { onProgress: (m) => process.stderr.write(`[capsule: ${m}]\n`) })).snapshotId;
          const created = await c.vms.create({ snapshotId, idleTimeoutSeconds: o.keep ? undefined : null });
          vm = created.vm;
          fresh = true;
          process.stderr.write(`[capsule: Claude Code in VM ${created.vmId}]\n`);
        }
        const home = o.user === "root" ? "/root" : `/home/${o.user}`;
        const env: Record<string, string> = { ...claudeEnv(process.env), HOME: home, PATH: `${home}/.local/bin:/usr/local/bin:/usr/bin:/bin` };
        const flags = [...(o.autonomous ? ["--dangerously-skip-permissions"] : []), ...(o.model ? ["--model", o.model] : [])];
        try {
          if (o.interactive) {
            if (!process.stdin.isTTY) this.error("--interactive needs a terminal on stdin", { exitCode: EXIT.USAGE });
            const exports = Object.entries({ ...env, TERM: process.env.TERM || "xterm-256color" })
              .map(([k, v]) => `${k}=${shq(v)}`)
              .join(" ");
            const args = shellJoin([...flags, ...(prompt ? [prompt] : [])]);
            const exec = `cd ${shq(o.dir)} && export ${exports} && exec claude ${args}`;
            const target = o.user === "root" ? vm : vm.user({ username: o.user });
            const r = await attachTerminal((size, listeners) => target.pty.open({ ...size, exec, ...listeners }));
            process.exitCode = r.code;
            return;
          }
          const cmd = shellJoin(["claude", "-p", prompt ?? "", ...flags]);
          const p = vm.spawn(`exec ${cmd}`, { user: o.user, cwd: o.dir, env });
          p.stdin.end(); // -p reads piped stdin until EOF
          p.stdout.pipe(process.stdout);
          p.stderr.pipe(process.stderr);
          const stop = () => p.kill("SIGTERM");
          process.once("SIGINT", stop);
          const exit = await p.exited.finally(() => process.off("SIGINT", stop));
          process.exitCode = exit.code ?? EXIT.FAILURE;
        } finally {
          if (fresh && !o.keep) await vm.delete().catch(() => undefined);
          else if (fresh) process.stderr.write(`[capsule: kept VM ${vm.id}]\n`);
        }
      }),
    );
  registerClaudeSnapshot(claude);
}

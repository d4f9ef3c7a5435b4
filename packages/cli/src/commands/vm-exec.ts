import { shellJoin } from "@capsule/contract/shell";
import { CommanderError, type Command } from "commander";
import { action, client, examples, EXIT, printJson, report } from "../api.js";

/**
 * The command line the VM's `/bin/sh -c` runs for `vm exec`'s words. One word is a shell command
 * line as typed (`'cd /srv/app && ls'`); several are a program and its arguments, each quoted, so
 * the program gets exactly these arguments, as with docker, kubectl or runsc exec.
 */
export function execCommandLine(words: readonly string[]): string {
  return words.length === 1 ? (words[0] ?? "") : shellJoin(words);
}

export function registerVmExec(vm: Command): void {
  vm.command("exec <vm> <command...>")
    .description("run a command in a VM, streaming its output; exits with the command's status")
    .option("--user <name>", "run as this Linux user (default root)")
    .option("--cwd <dir>", "working directory (absolute; default /)")
    .option("-e, --env <KEY=VALUE>", "set an environment variable (repeatable)", (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option("-i, --interactive", "forward this process's stdin to the command (EOF included)")
    .option("--timeout <seconds>", "kill the command after this many seconds")
    .option("--json", "buffer the run and print {stdout, stderr, statusCode} as JSON")
    .addHelpText(
      "after",
      `
The words after --:
  several words  a program and its arguments, passed exactly as given (each word is
                 quoted for the VM's shell), as docker and kubectl exec do
  one word       a shell command line, run by /bin/sh -c: pipes, &&, cd and $VARS work
${examples(
        "capsule vm exec VM -- uname -a",
        "capsule vm exec VM -- sh -c 'exit 7'            # exits 7",
        "capsule vm exec VM -- printf '%s|' \"one two\" three  # prints one two|three|",
        "capsule vm exec VM --user claude -- 'cd /srv/app && npm test'",
        "tar c . | capsule vm exec VM -i -- tar x -C /srv/app",
        "capsule vm exec VM --json -- cat /etc/os-release",
      )}`,
    )
    .action(
      action(async function (this: Command, id: string, words: string[]) {
        const o = this.opts<{ user?: string; cwd?: string; env: string[]; interactive?: boolean; timeout?: string; json?: boolean }>();
        const command = execCommandLine(words);
        const env: Record<string, string> = {};
        for (const kv of o.env) {
          const i = kv.indexOf("=");
          if (i < 1) this.error(`--env wants KEY=VALUE, got ${JSON.stringify(kv)}`, { exitCode: EXIT.USAGE });
          env[kv.slice(0, i)] = kv.slice(i + 1);
        }
        const timeoutMs = o.timeout !== undefined ? Math.round(Number(o.timeout) * 1000) : undefined;
        if (timeoutMs !== undefined && !(timeoutMs > 0)) this.error("--timeout must be a positive number of seconds", { exitCode: EXIT.USAGE });
        try {
          const vmh = client(this).vms.ref({ vmId: id });
          const handle = o.user ? vmh.user({ username: o.user }) : vmh;
          if (o.json) {
            if (o.cwd || Object.keys(env).length) this.error("--json runs a plain exec: put cd/env in the command instead of --cwd/--env", { exitCode: EXIT.USAGE });
            const r = await handle.exec({ command, ...(timeoutMs ? { timeoutMs } : {}) });
            printJson(r);
            process.exitCode = r.statusCode ?? EXIT.EXEC_FAILED;
            return;
          }
          const p = handle.spawn(command, { ...(o.cwd ? { cwd: o.cwd } : {}), env, ...(timeoutMs ? { timeoutMs } : {}) });
          p.stdout.pipe(process.stdout);
          p.stderr.pipe(process.stderr);
          if (o.interactive) process.stdin.pipe(p.stdin);
          else p.stdin.end();
          const exit = await p.exited;
          if (o.interactive) {
            process.stdin.unpipe(p.stdin);
            process.stdin.destroy();
          }
          if (exit.timedOut) process.stderr.write(`capsule: EXEC_TIMED_OUT: the command ran past --timeout ${o.timeout}s and was killed\n`);
          process.exitCode = exit.code ?? EXIT.EXEC_FAILED;
        } catch (err) {
          if (err instanceof CommanderError) throw err;
          report(err, EXIT.EXEC_FAILED);
        }
      }),
    );
}

import type { Command } from "commander";

/** `capsule serve`: runs the API until SIGINT/SIGTERM. Flags override env (CAPSULE_PORT, ...), which overrides the config file. */
export function registerServe(program: Command): void {
  program
    .command("serve")
    .description("serve the Freestyle-compatible API")
    .option("--port <n>", "TCP port (env CAPSULE_PORT; default 8080)", (v) => Number(v))
    .option("--host <addr>", "listen address (env CAPSULE_HOST; default 127.0.0.1)")
    .option("--data-dir <dir>", "data directory (env CAPSULE_DATA_DIR; default /var/lib/capsule)")
    .option("--images-dir <dir>", "base images (env CAPSULE_IMAGES_DIR; default <data-dir>/images)")
    .option("--agent-dir <dir>", "guest agent bundle (env CAPSULE_AGENT_BUNDLE; default <data-dir>/agent)")
    .option("--idle-timeout <seconds>", "default idle timeout, or none (env CAPSULE_IDLE_TIMEOUT_SECONDS; default 300)")
    .option("--egress <mode>", "VM egress: internet or none (env CAPSULE_EGRESS; default internet)")
    .option("--allow-host-port <port>", "a host TCP port VMs may reach at host.capsule.internal; repeatable (env CAPSULE_ALLOWED_HOST_PORTS, comma-separated)", (v: string, acc: number[] = []) => [...acc, Number(v)])
    .option("--no-package-caches", "VMs do not get the host's apt and npm caches at host.capsule.internal (env CAPSULE_PACKAGE_CACHES=0)")
    .option("--runsc <path>", "the runsc (gVisor) binary (env CAPSULE_RUNSC; default runsc on PATH)")
    .option("--network <stack>", "gVisor VMs' network stack: netstack (checkpoints), hostinet or auto (env CAPSULE_NETWORK; default netstack)")
    .option("--allow-repo <prefix>", "an http(s) URL prefix of repositories builds may clone (git.repos); repeatable (env CAPSULE_REPO_PREFIXES, comma-separated; default none)", (v: string, acc: string[] = []) => [...acc, v])
    .action(async (o: { port?: number; host?: string; dataDir?: string; imagesDir?: string; agentDir?: string; idleTimeout?: string; egress?: "none" | "internet"; allowHostPort?: number[]; packageCaches?: boolean; allowRepo?: string[]; runsc?: string; network?: "netstack" | "hostinet" | "auto" }) => {
      const { installLastResortGuard, startServer } = await import("@capsule/server"); // the server, engine and SQLite load only for `serve`
      const idle = o.idleTimeout === undefined ? undefined : o.idleTimeout === "none" ? null : Number(o.idleTimeout);
      const server = await startServer({
        ...(o.port !== undefined ? { port: o.port } : {}),
        ...(o.host !== undefined ? { host: o.host } : {}),
        ...(o.dataDir !== undefined ? { dataDir: o.dataDir } : {}),
        ...(o.imagesDir !== undefined ? { imagesDir: o.imagesDir } : {}),
        ...(o.agentDir !== undefined ? { agentBundleDir: o.agentDir } : {}),
        ...(idle !== undefined ? { defaultIdleTimeoutSeconds: idle } : {}),
        ...(o.egress !== undefined ? { egress: o.egress } : {}),
        ...(o.allowHostPort !== undefined ? { allowedHostPorts: o.allowHostPort } : {}),
        ...(o.allowRepo !== undefined ? { repoPrefixes: o.allowRepo } : {}),
        ...(o.runsc !== undefined ? { runscPath: o.runsc } : {}),
        ...(o.network !== undefined ? { network: o.network } : {}),
        // commander sets packageCaches true unless --no-package-caches: only the flag overrides env and file.
        ...(o.packageCaches === false ? { packageCaches: false } : {}),
      });
      // From here on, nothing one request or connection throws may take the process down.
      installLastResortGuard(server.log);
      // Parents (tests, supervisors) read the address from this line.
      process.stdout.write(`${JSON.stringify({ listening: server.url, port: server.port })}\n`);
      const stop = () => void server.close().then(() => process.exit(0));
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
}

import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import v8 from "node:v8";
import { config } from "./config.js";
import { serveConnection } from "./dispatch.js";
import { killRunningCommands } from "./exec.js";
import { log } from "./log.js";
import { hangUpSessions } from "./pty.js";
import { bootServices, killServices } from "./services/index.js";
import { attachBootZygote, startZygote } from "./zygote.js";

/**
 * The guest agent: serves the host's exec, PTY, file and service requests on a unix socket
 * inside the VM, and supervises the VM's services. It runs as root under tini, from the read-only bundle at /.capsule.
 */
function main(): void {
  // Children's files get the usual permissions whatever umask the runtime started us with.
  process.umask(0o022);
  // One bad connection must never take the agent (and every session in it) down.
  process.on("uncaughtException", (err) => log(`uncaught exception: ${err.stack ?? err.message}`));
  process.on("unhandledRejection", (err) => log(`unhandled rejection: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`));

  const socketPath = config.socketPath;
  // capsule-boot (native/boot.c) may have made the listening socket before Node, so the host's
  // first request waits in its backlog instead of polling for a socket. Read at run time, not
  // in `config`: the startup snapshot was built with no environment.
  const listenFd = takeListenFd();
  // The fork server is taken into use once the host's first request (its boot check) is
  // answered, so nothing competes with Node's start for the VM's CPU before then, and it comes
  // up while the host does its own work before sending a command. capsule-boot forked it before
  // Node and holds its exec until that moment; without capsule-boot, Node forks it then, which
  // inside gVisor stops Node for ~35 ms. A command that comes first is started by Node's own
  // spawn. The enabled services start then too, through the fork server, and never
  // delay that first answer.
  let booted = false;
  const afterFirstRequest = () => {
    if (booted) return;
    booted = true;
    if (!attachBootZygote()) startZygote();
    bootServices();
  };
  const server = net.createServer((sock) => {
    serveConnection(sock);
    sock.once("close", afterFirstRequest);
  });
  server.on("error", (err) => {
    log(`cannot listen on ${socketPath}: ${err.message}`);
    process.exit(1);
  });
  const listening = (how: string) => log(`listening on ${socketPath} (${how}; pid ${process.pid}, ${Math.round(performance.now())} ms after start)`);
  if (listenFd !== undefined) {
    server.listen({ fd: listenFd }, () => listening("socket from capsule-boot"));
  } else {
    fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o700 });
    fs.rmSync(socketPath, { force: true }); // a stale socket from an earlier run would make listen fail
    server.listen(socketPath, () => {
      fs.chmodSync(socketPath, 0o600);
      listening("own socket");
    });
  }
  // In a VM everything ends with tini anyway; run directly on a host, nothing is left behind.
  const stop = (signal: NodeJS.Signals) => {
    log(`${signal}: exiting`);
    server.close();
    killRunningCommands();
    killServices();
    hangUpSessions();
    process.exit(0);
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

/** The listening socket capsule-boot made (`CAPSULE_LISTEN_FD`), if it did; its commands never see the variable. */
function takeListenFd(): number | undefined {
  const value = process.env.CAPSULE_LISTEN_FD;
  delete process.env.CAPSULE_LISTEN_FD;
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
}

// The bundle's startup snapshot (scripts/bundle.mjs) holds this module graph already loaded; built
// from it, main runs when the snapshot is deserialized, in the VM, and not while it is built.
if (v8.startupSnapshot.isBuildingSnapshot()) v8.startupSnapshot.setDeserializeMainFunction(main);
else main();

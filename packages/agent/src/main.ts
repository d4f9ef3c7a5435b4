import v8 from "node:v8";
import { serveConnection } from "./dispatch.js";
import { killRunningCommands } from "./exec.js";
import { listen, stopListening } from "./listener.js";
import { log } from "./log.js";
import { hangUpSessions } from "./pty.js";
import { bootServices, killServices } from "./services/index.js";
import { startZygote } from "./zygote.js";

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

  // Starting the fork server forks this process, which inside gVisor stops us for ~35 ms. It
  // starts once the host's first request (its boot check) is answered, so the VM is ready that
  // much sooner and the fork runs while the host does its own work before sending a command. A
  // command that came first would be started by Node's spawn. The enabled services start then
  // too, through the fork server, and never delay that first answer.
  let zygoteStarted = false;
  const startZygoteOnce = () => {
    if (zygoteStarted) return;
    zygoteStarted = true;
    startZygote();
    bootServices();
  };
  listen((sock) => {
    serveConnection(sock);
    sock.once("close", startZygoteOnce);
  });
  // In a VM everything ends with tini anyway; run directly on a host, nothing is left behind.
  const stop = (signal: NodeJS.Signals) => {
    log(`${signal}: exiting`);
    stopListening();
    killRunningCommands();
    killServices();
    hangUpSessions();
    process.exit(0);
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

// The bundle's startup snapshot (scripts/bundle.mjs) holds this module graph already loaded; built
// from it, main runs when the snapshot is deserialized, in the VM, and not while it is built.
if (v8.startupSnapshot.isBuildingSnapshot()) v8.startupSnapshot.setDeserializeMainFunction(main);
else main();

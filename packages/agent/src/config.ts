import path from "node:path";
import { AGENT_SOCKET_DIR_IN_VM, AGENT_SOCKET_NAME, DEFAULT_ENV_FILE_IN_VM, DEFAULT_WORKDIR_FILE_IN_VM } from "@capsule/agent-protocol";

/**
 * Where the agent finds its socket and the bundle's helpers. The defaults are the VM layout;
 * the overrides exist so tests can run the agent directly on a host.
 */
export const config = {
  socketPath: process.env.CAPSULE_AGENT_SOCKET ?? `${AGENT_SOCKET_DIR_IN_VM}/${AGENT_SOCKET_NAME}`,
  spawnHelper: process.env.CAPSULE_SPAWN_HELPER ?? "/.capsule/bin/capsule-spawn",
  inputrc: process.env.CAPSULE_INPUTRC ?? "/.capsule/inputrc",
  /**
   * The fork server's FIFOs: a root-only directory on a filesystem inside the VM (/dev is the
   * sandbox's own tmpfs; the socket directory is a host mount, no place for FIFOs). Beside the
   * socket when tests run the agent on a host; `off` disables the fork server.
   */
  /**
   * Service definitions (root-only, one `<name>.json` each) and their logs: on the VM's own disk,
   * so they survive a stop/start and travel with its snapshots.
   */
  servicesDir: process.env.CAPSULE_SERVICES_DIR ?? "/etc/capsule/services",
  serviceLogDir: process.env.CAPSULE_SERVICE_LOG_DIR ?? "/var/log/capsule/services",
  workdirFile: process.env.CAPSULE_WORKDIR_FILE ?? DEFAULT_WORKDIR_FILE_IN_VM,
  envFile: process.env.CAPSULE_ENV_FILE ?? DEFAULT_ENV_FILE_IN_VM,
  fifoDir:
    process.env.CAPSULE_FIFO_DIR ??
    (process.env.CAPSULE_AGENT_SOCKET ? path.join(path.dirname(process.env.CAPSULE_AGENT_SOCKET), "fifo") : "/dev/.capsule-fifo"),
} as const;

import { AGENT_SOCKET_DIR_IN_VM, AGENT_SOCKET_NAME } from "@capsule/agent-protocol";

/**
 * Where the agent finds its socket and the bundle's helpers. The defaults are the VM layout;
 * the overrides exist so tests can run the agent directly on a host.
 */
export const config = {
  socketPath: process.env.CAPSULE_AGENT_SOCKET ?? `${AGENT_SOCKET_DIR_IN_VM}/${AGENT_SOCKET_NAME}`,
  spawnHelper: process.env.CAPSULE_SPAWN_HELPER ?? "/.capsule/bin/capsule-spawn",
  inputrc: process.env.CAPSULE_INPUTRC ?? "/.capsule/inputrc",
} as const;

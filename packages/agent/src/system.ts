import { AGENT_FEATURES, AGENT_PROTOCOL_VERSION } from "@capsule/agent-protocol";
import pkg from "../package.json" with { type: "json" };
import type { Conn } from "./conn.js";
import { runHelper } from "./helper.js";

export async function replyVersion(conn: Conn): Promise<void> {
  conn.sendJson({ type: "version", version: pkg.version, protocol: AGENT_PROTOCOL_VERSION, pid: process.pid, features: Object.values(AGENT_FEATURES) });
  conn.finish();
}

/** sync(2) for the whole VM: the host calls this before it copies the disk for a snapshot. Node has no binding for it. */
export async function syncFilesystems(conn: Conn): Promise<void> {
  await runHelper(undefined, ["--sync"]);
  conn.sendJson({ type: "ok" });
  conn.finish();
}

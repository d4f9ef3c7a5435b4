import type net from "node:net";
import { parseRequest } from "@capsule/agent-protocol";
import { prepareCheckpoint } from "./checkpoint.js";
import { Conn } from "./conn.js";
import { runExec } from "./exec.js";
import { handleFs } from "./files.js";
import { handleService } from "./services/index.js";
import { attachPty, closePty, listPty, openPty } from "./pty.js";
import { replyVersion, syncFilesystems } from "./system.js";
import { connectTcp } from "./tcp.js";

async function dispatch(raw: unknown, conn: Conn): Promise<void> {
  const req = parseRequest(raw);
  switch (req.op) {
    case "svc.define":
    case "svc.list":
    case "svc.get":
    case "svc.status":
    case "svc.control":
    case "svc.delete":
    case "svc.logs":
      return handleService(conn, req);
    case "version":
      return replyVersion(conn);
    case "sync":
      return syncFilesystems(conn);
    case "exec":
      return runExec(conn, req);
    case "pty.open":
      return openPty(conn, req);
    case "pty.attach":
      return attachPty(conn, req);
    case "pty.list":
      return listPty(conn);
    case "pty.close":
      return closePty(conn, req);
    case "tcp.connect":
      return connectTcp(conn, req);
    case "ckpt.prepare":
      return prepareCheckpoint(conn, req);
    default:
      return handleFs(conn, req);
  }
}

/** Serves one host connection; whatever goes wrong ends as an error reply on it, never a crash. */
export function serveConnection(sock: net.Socket): void {
  new Conn(sock, dispatch);
}

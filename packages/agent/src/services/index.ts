import type { ServiceRequest } from "@capsule/agent-protocol";
import { config } from "../config.js";
import type { Conn } from "../conn.js";
import { log } from "../log.js";
import { Supervisor } from "./supervisor.js";

const supervisor = new Supervisor(config.servicesDir, config.serviceLogDir);

/** Starts the enabled services in the background; failures are in their logs (and ours). */
export function bootServices(): void {
  supervisor.boot().catch((err: unknown) => log(`starting services failed: ${(err as Error).stack ?? String(err)}`));
}

export function killServices(): void {
  supervisor.killAll();
}

/** The `svc.*` ops: one request, one reply. */
export async function handleService(conn: Conn, req: ServiceRequest): Promise<void> {
  switch (req.op) {
    case "svc.define":
      conn.sendJson({ type: "services", services: await supervisor.define(req.services, { replace: req.replace, start: req.start }) });
      break;
    case "svc.list":
      conn.sendJson({ type: "services", services: await supervisor.list() });
      break;
    case "svc.get":
      conn.sendJson({ type: "service.spec", service: await supervisor.spec(req.name) });
      break;
    case "svc.status":
      conn.sendJson({ type: "service", status: await supervisor.status(req.name) });
      break;
    case "svc.control":
      conn.sendJson({ type: "service", status: await supervisor.control(req.name, req.action) });
      break;
    case "svc.delete":
      await supervisor.delete(req.name);
      conn.sendJson({ type: "ok" });
      break;
    case "svc.logs":
      conn.sendJson({ type: "logs", entries: await supervisor.logs(req.name, req) });
      break;
  }
  conn.finish();
}

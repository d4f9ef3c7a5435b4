/**
 * Starts the API: opens the database and the engine, reconciles them, serves HTTP (Hono on
 * @hono/node-server, behind the preview proxy's front for preview hosts) and WebSockets (`ws`, on the node server's `upgrade` event), and runs the
 * idle monitor. `close()` stops serving; running VMs keep running and are adopted next start.
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import type { AddressInfo } from "node:net";
import http, { type Server } from "node:http";
import { getRequestListener } from "@hono/node-server";
import { Engine } from "@capsule/engine";
import pino, { type Logger } from "pino";
import { ActivityTracker } from "./activity.js";
import { createApp } from "./app.js";
import { setInternalErrorSink } from "./errors.js";
import { ConsoleAuth } from "./console/auth.js";
import { dbPath, resolveConfig, type ConfigOptions, type ServerConfig } from "./config.js";
import { DEFAULT_LIMITS, type Deps, type ServerLimits } from "./context.js";
import { openDb } from "./db.js";
import { IdleMonitor } from "./idle.js";
import { PreviewAccess } from "./preview/access.js";
import { OWN_CREDENTIALS, PreviewFront } from "./preview/front.js";
import { checkHostNames, HostRouter, type HostNames } from "./preview/host.js";
import { ShareSigner } from "./preview/share-token.js";
import { PreviewProxy } from "./preview/proxy.js";
import { KeyStore } from "./keys.js";
import { Metrics } from "./metrics.js";
import { VmService } from "./vm-service.js";
import { START_WITH_UNOWNED_ENV } from "./vms/provisioning.js";
import { UploadSessions } from "./routes/v5/upload-sessions.js";
import { createUpgradeHandler } from "./ws/upgrade.js";

export interface RunningServer {
  url: string;
  port: number;
  config: ServerConfig;
  engine: Engine;
  keys: KeyStore;
  svc: VmService;
  /** The preview proxy (its open connections, for tests and metrics). */
  proxy: PreviewProxy;
  /** The server's logger (pino). */
  log: Logger;
  close(): Promise<void>;
}

export interface StartOptions extends ConfigOptions {
  limits?: Partial<ServerLimits>;
  logger?: Logger;
  /** Start although the database is empty while the engine holds VMs (see Provisioning.reconcile). */
  startWithUnowned?: boolean;
  /** Test seam: awaited before each warm pool boot, so a test can hold the refill. */
  poolBootGate?: () => Promise<void>;
}

export async function startServer(opts: StartOptions = {}): Promise<RunningServer> {
  const { limits: limitOverrides, logger, startWithUnowned: _startWithUnowned, poolBootGate, ...configOpts } = opts;
  const config = resolveConfig(configOpts);
  const hostNames: HostNames = { previewDomain: config.previewDomain, apiHostnames: [config.host.toLowerCase(), ...config.apiHostnames], domainSuffixes: config.domainSuffixes };
  checkHostNames(hostNames);
  const log = logger ?? pino({ level: config.logLevel, base: { svc: "capsule" } });
  if (config.previewDomain !== "localhost" && config.apiHostnames.length === 0) {
    log.warn({ previewDomain: config.previewDomain }, "CAPSULE_API_HOSTNAMES is empty: the server cannot check that the API's host name lies outside the preview domain (a preview page could set cookies for it)");
  }
  setInternalErrorSink(({ requestId, err, engineCode }) => log.error({ err, requestId, engineCode }, "internal error (the tenant sees only the request id)"));
  fs.mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  // Repository mirrors lived in <dataDir>/repos before git dropped root (repos/mirrors.ts); a cache, so it just goes.
  fs.rmSync(path.join(config.dataDir, "repos"), { recursive: true, force: true });
  const db = openDb(dbPath(config.dataDir));
  let engine: Engine;
  try {
    engine = await Engine.open({
      dataDir: config.dataDir,
      imagesDir: config.imagesDir,
      agentBundleDir: config.agentBundleDir,
      allowedHostPorts: config.allowedHostPorts,
      packageCaches: config.packageCaches,
      runscPath: config.runscPath,
      network: config.network,
    });
  } catch (err) {
    db.close();
    throw err;
  }
  const keys = new KeyStore(db);
  const svc = new VmService(engine, db, new ActivityTracker(), log, {
    defaultIdleTimeoutSeconds: config.defaultIdleTimeoutSeconds,
    egress: config.egress,
    quotas: config.quotas,
    admission: config.admission,
    pool: config.pool,
    repoPrefixes: config.repoPrefixes,
    repoMirrorsDir: config.repoMirrorsDir,
    repoMirrorsMaxBytes: config.repoMirrorsMaxBytes,
    repoMirrorUnusedDays: config.repoMirrorUnusedDays,
    ...(poolBootGate ? { poolBootGate } : {}),
    startWithUnowned: opts.startWithUnowned ?? process.env[START_WITH_UNOWNED_ENV] === "1",
    domains: hostNames,
  });
  try {
    await svc.reconcile();
  } catch (err) {
    await engine.close();
    db.close();
    throw err;
  }
  const limits = { ...DEFAULT_LIMITS, ...limitOverrides };
  const uploads = new UploadSessions(svc.gateway, limits, log);
  const previewAccess = new PreviewAccess(new HostRouter(hostNames), svc.rows.preview, ShareSigner.forDataDir(config.dataDir), keys);
  const deps: Deps = { svc, keys, metrics: new Metrics(() => svc.stateCounts(), () => svc.pool.stats(), () => engine.preparedRestore()?.made === true), log, limits, console: new ConsoleAuth(db, keys), uploads, preview: previewAccess, features: engine.features };
  const app = createApp(deps);
  // Preview hosts go to the proxy before the API sees them (preview/front.ts).
  const proxy = new PreviewProxy(svc.gateway, log, OWN_CREDENTIALS, previewAccess);
  const preview = new PreviewFront(previewAccess, proxy, keys, svc.rows.domains);
  const server: Server = http.createServer(preview.requests(getRequestListener(app.fetch)));
  // A request Node's HTTP parser refuses (headers over its 16 KiB, broken framing) gets the API's
  // error body too, not Node's bare status line without one (found by the API fuzzer).
  server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
    if (err.code === "ECONNRESET" || !socket.writable) return socket.destroy();
    const status = err.code === "HPE_HEADER_OVERFLOW" ? 431 : 400;
    const body = JSON.stringify({ code: "BAD_REQUEST", error: "BAD_REQUEST", message: status === 431 ? "request headers over the server's limit" : "malformed HTTP request" });
    socket.end(`HTTP/1.1 ${status} ${status === 431 ? "Request Header Fields Too Large" : "Bad Request"}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });
  const upgrade = createUpgradeHandler(deps);
  server.on("upgrade", preview.upgrades(upgrade.handle));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const idle = new IdleMonitor(svc, log, config.idleCheckMs);
  idle.start();
  svc.pool.start();
  const port = (server.address() as AddressInfo).port;
  const url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`;
  log.info({ url, dataDir: config.dataDir }, "capsule API listening");

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      idle.stop();
      // Ended before the connections are cut, so a chunk cut mid-body removes its upload's chunks.
      const uploadsClosed = uploads.close();
      for (const ws of upgrade.wss.clients) ws.terminate();
      proxy.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await uploadsClosed;
      await svc.pool.close();
      await engine.close();
      db.close();
    })());
  return { url, port, config, engine, keys, svc, log, proxy, close };
}

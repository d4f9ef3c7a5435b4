import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { config } from "./config.js";
import { log } from "./log.js";

/**
 * The agent's listening socket, which a checkpoint closes and opens again (`checkpoint.ts`):
 * runsc cannot save a socket bound through `--host-uds=create`.
 */
let server: net.Server | undefined;
let onConnection: ((sock: net.Socket) => void) | undefined;

/** Listens on the socket path, handing every connection to `handler`. */
export function listen(handler: (sock: net.Socket) => void): void {
  onConnection = handler;
  listenAgain();
}

/** Listens again after {@link stopListening}, with the handler {@link listen} was given. */
export function listenAgain(): void {
  const serve = onConnection;
  if (server || !serve) return;
  const socketPath = config.socketPath;
  fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o700 });
  fs.rmSync(socketPath, { force: true }); // a stale socket from an earlier run would make listen fail
  const s = net.createServer(serve);
  server = s;
  s.on("error", (err) => {
    log(`cannot listen on ${socketPath}: ${err.message}`);
    process.exit(1);
  });
  s.listen(socketPath, () => {
    fs.chmodSync(socketPath, 0o600);
    log(`listening on ${socketPath} (pid ${process.pid}, ${Math.round(performance.now())} ms after start)`);
  });
}

/**
 * Stops listening and removes the socket file before returning, so a host that sees our reply
 * next knows the socket is gone. Connections already accepted stay open.
 */
export function stopListening(): void {
  server?.close();
  server = undefined;
  fs.rmSync(config.socketPath, { force: true });
}

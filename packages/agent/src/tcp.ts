import net from "node:net";
import type { TcpConnectRequest } from "@capsule/agent-protocol";
import type { Conn } from "./conn.js";
import { AgentError } from "./errors.js";

/**
 * How long a `tcp.connect` waits for the VM's server to accept. On loopback a connect is
 * answered at once (accepted or refused); only a server whose accept queue is full makes it wait.
 */
export const TCP_CONNECT_TIMEOUT_MS = 5_000;

/**
 * Loopback addresses tried in order: a dev server bound to `localhost` listens on one of them
 * (Node's own `localhost` resolves to ::1 first on some systems, 127.0.0.1 on others).
 */
const LOOPBACK = ["127.0.0.1", "::1"] as const;

function connectOnce(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    // allowHalfOpen: the VM's server may end its side while the host still sends, and the other way.
    const sock = net.connect({ host, port, allowHalfOpen: true });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new AgentError("CONNECT_TIMEOUT", `port ${port} did not accept a connection within ${TCP_CONNECT_TIMEOUT_MS} ms`));
    }, TCP_CONNECT_TIMEOUT_MS);
    sock.once("connect", () => {
      clearTimeout(timer);
      sock.off("error", onError);
      resolve(sock);
    });
    const onError = (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      // EADDRNOTAVAIL: the VM has no ::1 (IPv6 off); nothing listens there either.
      if (err.code === "ECONNREFUSED" || err.code === "EADDRNOTAVAIL") reject(new AgentError("CONNECTION_REFUSED", `nothing listens on port ${port} in the VM`));
      else reject(err);
    };
    sock.once("error", onError);
  });
}

async function connectLoopback(port: number): Promise<net.Socket> {
  let refused: unknown;
  for (const host of LOOPBACK) {
    try {
      return await connectOnce(host, port);
    } catch (err) {
      if (!(err instanceof AgentError) || err.code !== "CONNECTION_REFUSED") throw err;
      refused = err;
    }
  }
  throw refused;
}

/** `tcp.connect`: connects to the port, answers `ok`, then pipes raw bytes both ways with backpressure. */
export async function connectTcp(conn: Conn, req: TcpConnectRequest): Promise<void> {
  const target = await connectLoopback(req.port);
  conn.sendJson({ type: "ok" });
  const host = conn.release();
  if (!host) {
    target.destroy();
    return;
  }
  host.allowHalfOpen = true;
  // A reset or error on either side ends both; an orderly end (FIN) is passed on by pipe().
  const destroyBoth = () => {
    host.destroy();
    target.destroy();
  };
  host.on("error", destroyBoth);
  target.on("error", destroyBoth);
  // Once one side is fully closed the other has nothing left to talk to.
  host.once("close", () => target.destroy());
  target.once("close", () => {
    if (!host.writableEnded) host.end();
  });
  host.pipe(target);
  target.pipe(host);
}

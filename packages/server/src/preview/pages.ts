/**
 * The proxy's own answers, as small HTML pages a browser user can read (a curl user gets the same
 * text, and `X-Capsule-Proxy-Error` carries a stable code for scripts and tests). Nothing in
 * them comes from the request or the VM except the port number and, in the console link, the
 * percent-encoded preview URL, so they cannot be used to inject markup.
 * @module
 */
import type { ServerResponse } from "node:http";
import type { Duplex } from "node:stream";

export const PROXY_ERROR_HEADER = "x-capsule-proxy-error";

export interface ProxyPage {
  status: number;
  /** Stable machine-readable code (the header above). */
  code: string;
  title: string;
  detail: string;
  /** A way on (built from trusted parts only: the server's own origin and a percent-encoded URL). */
  link?: { href: string; text: string };
}

export const PAGES = {
  /** Also for a VM that does not exist or is another account's: the two must look the same. */
  private: (consoleUrl?: string): ProxyPage => ({
    status: 401,
    code: "PREVIEW_PRIVATE",
    title: "This preview is private",
    detail: "Open it with the VM owner's API key (Authorization: Bearer), a share link, or from the Capsule console.",
    ...(consoleUrl ? { link: { href: consoleUrl, text: "Open it from the Capsule console" } } : {}),
  }),
  nothingListens: (port: number): ProxyPage => ({ status: 502, code: "NOTHING_LISTENS", title: `Nothing listens on port ${port}`, detail: `The VM runs, but no server accepts connections on port ${port} inside it. Start your server (on localhost or 0.0.0.0) and reload.` }),
  vmStopped: (): ProxyPage => ({ status: 503, code: "VM_STOPPED", title: "The VM is stopped", detail: "Start the VM (POST /v1/vms/{id}/start or the console) and reload." }),
  unavailable: (): ProxyPage => ({ status: 503, code: "VM_UNAVAILABLE", title: "The VM cannot be reached right now", detail: "The VM's agent did not answer, or the server is out of capacity. Try again shortly." }),
  badGateway: (): ProxyPage => ({ status: 502, code: "BAD_GATEWAY", title: "The VM's server broke the connection", detail: "The server in the VM closed the connection or sent an invalid HTTP response." }),
  timeout: (): ProxyPage => ({ status: 504, code: "GATEWAY_TIMEOUT", title: "The VM's server did not answer in time", detail: "The server in the VM accepted the connection but sent no response headers in time." }),
  tooMany: (): ProxyPage => ({ status: 429, code: "TOO_MANY_CONNECTIONS", title: "Too many open connections", detail: "This account has as many proxied connections open as it may. Close some and retry." }),
  tooManyFromClient: (): ProxyPage => ({ status: 429, code: "TOO_MANY_CONNECTIONS", title: "Too many open connections", detail: "Your address has as many connections open to previews as it may without the owner's key. Close some and retry." }),
} as const;

function html(page: ProxyPage): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${page.title}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}h1{font-size:1.4em}small{color:#777}</style></head>
<body><h1>${page.title}</h1><p>${page.detail}</p>${page.link ? `<p><a href="${page.link.href.replace(/&/g, "&amp;").replace(/"/g, "&quot;")}">${page.link.text}</a></p>` : ""}<p><small>${page.status} · ${page.code} · Capsule preview proxy</small></p></body></html>
`;
}

function headers(page: ProxyPage, body: string, extra: Record<string, string>): Record<string, string> {
  return { "content-type": "text/html; charset=utf-8", "content-length": String(Buffer.byteLength(body)), "cache-control": "no-store", [PROXY_ERROR_HEADER]: page.code, ...extra };
}

export function sendPage(res: ServerResponse, page: ProxyPage, extra: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = html(page);
  res.writeHead(page.status, headers(page, body, extra));
  res.end(body);
}

/** The same page on a raw socket (a WebSocket upgrade refused before any 101). */
export function sendPageOnSocket(socket: Duplex, page: ProxyPage): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = html(page);
  const head = Object.entries(headers(page, body, { connection: "close" }))
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  socket.end(`HTTP/1.1 ${page.status} ${page.title.replace(/[^\x20-\x7e]/g, "")}\r\n${head}\r\n${body}`);
}

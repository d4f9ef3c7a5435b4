/**
 * A dev-server-like app for the preview proxy tests, run in a VM on the agent bundle's Node and
 * listening on localhost only (as Vite does): an HTML page whose script opens a WebSocket that the
 * server pushes a message on (and echoes), the request's headers as JSON, an upload that answers
 * its byte count and sha256, a download of N bytes of a known pattern, and server-sent events
 * with a pause between them.
 */
import crypto from "node:crypto";

/** The bundle's Node, started the way the VM starts the agent. */
export const VM_NODE = "/.capsule/lib/ld-linux-x86-64.so.2 --library-path /.capsule/lib /.capsule/bin/node";
export const APP_PATH = "/srv/dev-app.js";
export const WS_GREETING = "hello from the vm";
/** Between the two server-sent events. */
export const SSE_GAP_MS = 1500;

/** The download's bytes: this 64 KiB block, repeated. */
export function patternBlock(): Buffer {
  const block = Buffer.alloc(65536);
  for (let i = 0; i < block.length; i++) block[i] = (i * 31 + 7) & 255;
  return block;
}

/** sha256 of `bytes` of the download pattern. */
export function patternSha256(bytes: number): string {
  const block = patternBlock();
  const h = crypto.createHash("sha256");
  for (let left = bytes; left > 0; left -= block.length) h.update(block.subarray(0, Math.min(left, block.length)));
  return h.digest("hex");
}

export const DEV_APP = String.raw`
const http = require("http");
const crypto = require("crypto");
const port = Number(process.argv[2] || 5173);
const block = Buffer.alloc(65536);
for (let i = 0; i < block.length; i++) block[i] = (i * 31 + 7) & 255;
const page = '<!doctype html><title>dev app</title><p id="msg">waiting</p><p id="echo"></p><script>' +
  'const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");' +
  'ws.onmessage = (e) => { if (e.data.startsWith("echo:")) document.getElementById("echo").textContent = e.data; else { document.getElementById("msg").textContent = e.data; ws.send("ping"); } };' +
  '</script>';
const frame = (text) => { const b = Buffer.from(text); return Buffer.concat([Buffer.from([0x81, b.length]), b]); };
http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  if (url.pathname === "/") { res.writeHead(200, { "content-type": "text/html" }); return res.end(page); }
  if (url.pathname === "/headers") { res.writeHead(200, { "content-type": "application/json", "set-cookie": ["app=1; Path=/", "capsule_preview=forged; Path=/"] }); return res.end(JSON.stringify({ url: req.url, method: req.method, headers: req.headers })); }
  if (url.pathname === "/upload") {
    const h = crypto.createHash("sha256"); let n = 0;
    req.on("data", (d) => { n += d.length; h.update(d); });
    req.on("end", () => { res.writeHead(200, { "content-type": "application/json" }); res.end(JSON.stringify({ bytes: n, sha256: h.digest("hex") })); });
    return;
  }
  if (url.pathname === "/download") {
    let left = Number(url.searchParams.get("bytes"));
    res.writeHead(200, { "content-type": "application/octet-stream" });
    const more = () => { while (left > 0) { const c = block.subarray(0, Math.min(left, block.length)); left -= c.length; if (!res.write(c)) return res.once("drain", more); } res.end(); };
    return more();
  }
  if (url.pathname === "/sse") {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    res.write("data: one\n\n");
    setTimeout(() => { res.write("data: two\n\n"); res.end(); }, ${SSE_GAP_MS});
    return;
  }
  res.writeHead(404, { "content-type": "text/plain" }); res.end("not found");
}).on("upgrade", (req, sock) => {
  const accept = crypto.createHash("sha1").update(req.headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
  sock.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n");
  sock.write(frame("${WS_GREETING}"));
  // Small masked client frames only: echo their text back.
  sock.on("data", (d) => {
    if ((d[0] & 0x0f) === 0x8) return sock.end();
    const len = d[1] & 0x7f, mask = d.subarray(2, 6), body = Buffer.from(d.subarray(6, 6 + len));
    for (let i = 0; i < body.length; i++) body[i] ^= mask[i % 4];
    sock.write(frame("echo:" + body.toString()));
  });
  sock.on("error", () => {});
}).listen(port, "127.0.0.1", () => console.log("ready"));
`;

/** A shell command that starts the app on `port` in the background and waits until it listens. */
export function startAppCommand(port: number): string {
  const log = `/srv/dev-app-${port}.log`;
  return `setsid ${VM_NODE} ${APP_PATH} ${port} >${log} 2>&1 </dev/null & for i in $(seq 200); do grep -q ready ${log} && exit 0; sleep 0.05; done; cat ${log}; exit 1`;
}

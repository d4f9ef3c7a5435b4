/** A raw `ws` client for the tests: upgrade answers, frames, and closes. */
import WebSocket from "ws";

export interface WsResult {
  ws?: WebSocket;
  /** Every message since the socket was made (frames can arrive in the same read as the handshake, before a listener added after `open` would see them). */
  messages: Array<{ data: Buffer; binary: boolean }>;
  /** HTTP status when the upgrade was refused. */
  status?: number;
  body?: { code?: string; message?: string };
}

export function wsUrl(httpUrl: string, path: string): string {
  return httpUrl.replace(/^http/, "ws") + path;
}

/** Opens a socket; resolves with it once open, or with the refusal's status and JSON body. */
export function connect(url: string, key: string, headers: Record<string, string> = {}): Promise<WsResult> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${key}`, ...headers } });
    const messages: WsResult["messages"] = [];
    ws.on("message", (data: Buffer, binary: boolean) => messages.push({ data, binary }));
    ws.once("open", () => resolve({ ws, messages }));
    ws.once("unexpected-response", (_req, res) => {
      let text = "";
      res.on("data", (d: Buffer) => (text += d.toString("utf8")));
      res.on("end", () => resolve({ messages, status: res.statusCode ?? 0, body: JSON.parse(text || "{}") as WsResult["body"] }));
    });
    ws.once("error", reject);
  });
}

/** Waits until `pred` holds for the messages so far. */
export async function waitForMessages(r: WsResult, pred: (m: WsResult["messages"]) => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred(r.messages)) {
    if (Date.now() > deadline) throw new Error(`timed out; messages: ${r.messages.map((m) => (m.binary ? `<${m.data.length} bytes>` : String(m.data))).join(" ")}`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

/**
 * A scripted Messages API for tests: what Claude Code (and the Agent SDK through it) talks to
 * when `ANTHROPIC_BASE_URL` points here. Speaks `POST /v1/messages` (SSE when `stream` is true,
 * JSON otherwise), `POST /v1/messages/count_tokens`, and answers every other GET/HEAD with 200 `{}`.
 * Replies come from a script of rules matched against the conversation's first user prompt: each
 * rule is a list of steps (text, or a `tool_use` of Write / Bash / Edit / …), one step per model
 * turn; after the tool_result of step n the next request gets step n+1. Every request is recorded.
 * Listens on 0.0.0.0 so VMs reach it as `http://host.capsule.internal:PORT` (an allowed host port).
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

/** One model turn: final text, or one tool call. */
export type Step = { text: string } | { tool: string; input: Record<string, unknown> };

export interface ScriptRule {
  /** Matched against the first user prompt of the conversation (system reminders stripped); with `latest`, against its latest one. */
  match: RegExp;
  /** Match the conversation's latest user prompt instead of its first: a later prompt of one session. Its steps count from that prompt. */
  latest?: boolean;
  steps: Step[];
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: MessagesBody | undefined;
}

interface ContentBlock {
  type: string;
  text?: string;
  name?: string;
  tool_use_id?: string;
}
interface MessagesBody {
  model?: string;
  stream?: boolean;
  tools?: Array<{ name: string }>;
  messages?: Array<{ role: string; content: string | ContentBlock[] }>;
}

export interface FakeAnthropic {
  port: number;
  /** The base URL as a VM sees it. */
  vmBaseUrl: string;
  /** The base URL from the host. */
  hostBaseUrl: string;
  requests: RecordedRequest[];
  /** Requests to /v1/messages that offered tools (the agent loop, not side requests). */
  turns(): RecordedRequest[];
  /** Adds rules in front of the existing ones. */
  script(...rules: ScriptRule[]): void;
  close(): Promise<void>;
}

/** The user's prompt text of a conversation: the first user message's text (with `latest`, the last one's), reminders stripped. */
export function promptOf(body: MessagesBody | undefined, latest = false): string {
  const messages = body?.messages ?? [];
  for (const m of latest ? [...messages].reverse() : messages) {
    if (m.role !== "user") continue;
    const blocks = typeof m.content === "string" ? [{ type: "text", text: m.content }] : m.content;
    const text = blocks
      .filter((b) => b.type === "text")
      .map((b) => (b.text ?? "").replace(/<system-reminder>[\s\S]*?<\/system-reminder>/g, ""))
      .join("\n")
      .trim();
    if (text) return text;
  }
  return "";
}

/** The conversation's tool-calling assistant turns; with `latest`, only those after its latest prompt. */
function assistantTurns(body: MessagesBody, latest = false): number {
  let messages = body.messages ?? [];
  if (latest) {
    // A user message with text (not only tool results): a prompt.
    const at = messages.findLastIndex((m) => m.role === "user" && promptOf({ messages: [m] }) !== "");
    messages = messages.slice(Math.max(at, 0));
  }
  return messages.filter((m) => m.role === "assistant" && Array.isArray(m.content) && m.content.some((b) => b.type === "tool_use")).length;
}

export async function startFakeAnthropic(rules: ScriptRule[] = [], fallback = "Hello from the scripted Messages API."): Promise<FakeAnthropic> {
  const script = [...rules];
  const requests: RecordedRequest[] = [];
  let ids = 0;

  const reply = (body: MessagesBody): Step => {
    if (!body.tools || body.tools.length === 0) return { text: "Capsule session" }; // side request (e.g. a title)
    const rule = script.find((r) => r.match.test(promptOf(body, r.latest)));
    if (!rule) return { text: fallback };
    const i = assistantTurns(body, rule.latest);
    return rule.steps[Math.min(i, rule.steps.length - 1)] ?? { text: fallback };
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const path = (req.url ?? "/").split("?")[0] ?? "/";
      let body: MessagesBody | undefined;
      try {
        body = chunks.length ? (JSON.parse(Buffer.concat(chunks).toString("utf8")) as MessagesBody) : undefined;
      } catch {
        body = undefined;
      }
      requests.push({ method: req.method ?? "GET", path, headers: req.headers, body });
      if (req.method === "POST" && path === "/v1/messages/count_tokens") return json(res, { input_tokens: 42 });
      if (req.method === "POST" && path === "/v1/messages") {
        if (!body) return json(res, { type: "error", error: { type: "invalid_request_error", message: "bad JSON" } }, 400);
        const step = reply(body);
        const id = `msg_capsule_${++ids}`;
        const model = body.model ?? "claude-test";
        const block =
          "text" in step
            ? { type: "text", text: step.text }
            : { type: "tool_use", id: `toolu_capsule_${ids}`, name: step.tool, input: step.input };
        const stop = "text" in step ? "end_turn" : "tool_use";
        if (!body.stream) {
          return json(res, { id, type: "message", role: "assistant", model, content: [block], stop_reason: stop, stop_sequence: null, usage: { input_tokens: 10, output_tokens: 5 } });
        }
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
        const ev = (type: string, data: Record<string, unknown>) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
        ev("message_start", { message: { id, type: "message", role: "assistant", model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 10, output_tokens: 1 } } });
        ev("ping", {});
        if ("text" in step) {
          ev("content_block_start", { index: 0, content_block: { type: "text", text: "" } });
          ev("content_block_delta", { index: 0, delta: { type: "text_delta", text: step.text } });
        } else {
          ev("content_block_start", { index: 0, content_block: { type: "tool_use", id: (block as { id: string }).id, name: step.tool, input: {} } });
          ev("content_block_delta", { index: 0, delta: { type: "input_json_delta", partial_json: JSON.stringify(step.input) } });
        }
        ev("content_block_stop", { index: 0 });
        ev("message_delta", { delta: { stop_reason: stop, stop_sequence: null }, usage: { output_tokens: 5 } });
        ev("message_stop", {});
        res.end();
        return;
      }
      if (req.method === "GET" || req.method === "HEAD") return json(res, {});
      return json(res, { type: "error", error: { type: "not_found_error", message: `no route ${path}` } }, 404);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "0.0.0.0", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    vmBaseUrl: `http://host.capsule.internal:${port}`,
    hostBaseUrl: `http://127.0.0.1:${port}`,
    requests,
    turns: () => requests.filter((r) => r.path === "/v1/messages" && (r.body?.tools?.length ?? 0) > 0),
    script: (...more) => void script.unshift(...more),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function json(res: http.ServerResponse, body: unknown, status = 200): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

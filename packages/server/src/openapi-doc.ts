import { ExecClientMessage, ExecServerMessage, PtyClientMessage, PtyServerMessage } from "@capsule/contract/ws";
import type { App } from "./context.js";

/** The description at the top of /openapi.json: what is compatible, what is Capsule's own, the limits. */
export const OPENAPI_DESCRIPTION = `
Capsule's API speaks the Freestyle v1 wire protocol of the \`freestyle@0.1.63\` client: point it at
Capsule with \`FREESTYLE_API_URL=http://HOST:PORT\` and \`FREESTYLE_API_KEY=<capsule key>\`.

**Auth.** Every route except \`/healthz\` and \`/openapi.json\` (and every WebSocket upgrade) needs
\`Authorization: Bearer <key>\`; create keys with \`capsule keys create\`. Ids of other accounts' VMs,
snapshots and sessions answer 404, never 403. A request with a 0.2 identity token
(\`x-freestyle-identity-access-token\`) and no key answers \`BAD_REQUEST\` 501 (\`unsupported: true\`):
Capsule has no identities.

**Errors.** \`{code, message}\` (plus \`error\` = code), with codes the Freestyle client maps to its
typed errors. Features Capsule lacks (on \`/v1\`: git, domains, VPCs, identities, builds, watch-files,
terminals, resize) answer \`BAD_REQUEST\` with status 501.

**\`/v5\` (the \`freestyle@0.2.x\` client, \`new Freestyle({ baseUrl: "http://HOST:PORT" })\`).** The same
accounts, keys, ownership and quotas over the \`/v5\` paths. What differs from \`/v1\`, route by route
below: a create needs a \`firewall\` (default deny; outbound allow rules to \`{public: true}\`, an IPv4
\`{cidr}\`, another of the account's VMs \`{vmId}\`, or a host port: \`{vmId: "host", protocol: "tcp",
port}\`, a port the operator lists with \`--allow-host-port\`, which the VM reaches as
\`host.capsule.internal\`: 169.254.100.1 in every VM, or its own gateway address); \`idleTimeoutSeconds\` -1, null or absent means never; \`pause\` keeps the
VM's memory, a paused VM stays paused across a server restart and counts as running for the
account's running-VM quota and the host's capacity; \`resize\` only grows vCPUs and memory and applies
at the VM's next boot; a snapshot holds the VM's memory and disk where the VM can be checkpointed
(\`contents: "memory+disk"\`: a VM created from it resumes its processes), else the disk only
(\`contents: "disk"\`). The background-request
header (\`x-freestyle-background-after-secs\`) is accepted and every call answers inline, never 202;
\`/v5/background-requests\`, \`/v5/identities\`, VPCs, tunnels, domains, TLS and standalone firewall
rules answer \`BAD_REQUEST\` 501 (\`unsupported: true\`); 0.2 retries neither.

**Linux users.** \`X-Freestyle-Vm-Linux-User-Id: <name>\` runs exec, file access, PTYs and services as that user.

**Idle timeout.** A VM with \`idleTimeoutSeconds\` (default 300 s; \`null\` = never) is suspended
(processes stop, disk kept) after that long with no request in flight, no PTY or exec stream
attached, and at most \`activityThresholdBytes\` of network traffic per check. Any request for it
wakes it. A VM stopped with \`/stop\` or \`/kill\` stays stopped until \`/start\`.

**Limits.** Request bodies up to 64 MiB (a base64 file PUT carries about 48 MiB); file GETs up to
32 MiB; exec output up to 64 MiB per stream.

**Long execs.** An exec without a timeout (or one over 280 s) still running after 25 s gets its 200
headers at once and a space every 30 s before its JSON, because the client's fetch gives up after
300 s without headers.

**Streaming exec (Capsule extension).** WebSocket \`GET /v1/vms/{vm_id}/exec-stream?command=...\`:
live stdin/stdout/stderr, EOF, kill and the exit code; see that route.
`.trim();

/** The parts of the OpenAPI document the contract checks read. */
export interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string; description?: string };
  paths: Record<string, Record<string, { responses?: Record<string, { content?: Record<string, { schema?: { $ref?: string } }> }> }>>;
  components: { schemas: Record<string, { properties?: Record<string, { enum?: string[] }>; description?: string }> };
}

/**
 * The document `GET /openapi.json` serves, built from an app whose services are inert (no engine,
 * database or root needed): for tests and tools that check the API contract.
 */
export async function openApiDocument(): Promise<OpenApiDocument> {
  const [{ createApp }, { DEFAULT_LIMITS }] = await Promise.all([import("./app.js"), import("./context.js")]);
  const inert = new Proxy({}, { get: (_t, prop) => { throw new Error(`openApiDocument: the app's services are inert (read ${String(prop)})`); } });
  const deps = { svc: inert, keys: inert, log: inert, metrics: { httpDuration: { observe: () => undefined } }, limits: DEFAULT_LIMITS };
  const res = await createApp(deps as unknown as Parameters<typeof createApp>[0]).request("/openapi.json");
  if (!res.ok) throw new Error(`openApiDocument: /openapi.json answered ${res.status}`);
  return (await res.json()) as OpenApiDocument;
}

/**
 * Publishes the contract's WebSocket messages as components of the document (`PtyClientMessage`,
 * `PtyServerMessage`, `ExecClientMessage`, `ExecServerMessage`): the text frames of the PTY and
 * exec-stream sockets, which OpenAPI cannot attach to a route.
 */
export function registerWsMessages(app: App): void {
  const messages = { PtyClientMessage, PtyServerMessage, ExecClientMessage, ExecServerMessage };
  for (const [name, schema] of Object.entries(messages)) app.openAPIRegistry.register(name, schema);
}

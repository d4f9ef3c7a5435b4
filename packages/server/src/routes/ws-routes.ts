import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context.js";
import { ApiError } from "../errors.js";
import { LinuxUserHeader, PtySessionParams, VmParams } from "../schemas.js";
import { errors, security } from "./common.js";

/**
 * The WebSocket routes. Upgrades are served by the node server's `upgrade` handler (ws/upgrade.ts)
 * before Hono sees them; these definitions document them in the OpenAPI document and answer a
 * plain GET (no Upgrade header) with a clear error.
 */
const PtyQuery = z.object({
  cols: z.string().optional(),
  rows: z.string().optional(),
  exec: z.string().optional().openapi({ description: "Command line run through /bin/sh -c instead of the user's shell" }),
  sessionId: z.string().optional().openapi({ description: "Not supported yet: ids are assigned by the server" }),
});

const upgradeOnly = (): never => {
  throw new ApiError("BAD_REQUEST", "this is a WebSocket route: connect with an Upgrade: websocket request", 426);
};

export function register(app: App): void {
  const switching = { 101: { description: "Switching Protocols" } };
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/vms/{vm_id}/pty",
      summary: "WebSocket: open a PTY session",
      description:
        'Text frame `{"type":"sessionInfo","sessionId"}` first; output as binary frames; binary frames in are stdin (flow-controlled: while the terminal does not take it, the server stops reading the socket); text frames in: `{"type":"resize","cols","rows"}`, `{"type":"signal","signal":"SIGINT"|"SIGKILL"}` (SIGINT writes 0x03; SIGKILL kills the session). When the process ends: `{"type":"exited","exitCode"}` then close 1000. Closing the socket detaches; the session keeps running. The session opens only after the handshake; a failure then closes with 1011 and the message as reason. Revoking the key or signing out of the console closes the socket (1008).',
      security,
      request: { params: VmParams, query: PtyQuery, headers: LinuxUserHeader },
      responses: { ...switching, ...errors(400, 404) },
    }),
    upgradeOnly,
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/vms/{vm_id}/pty/sessions/{session_id}",
      summary: "WebSocket: attach to a PTY session",
      description: "The scrollback arrives first as binary frames, then live output; same frames as open. SESSION_USER_MISMATCH (403) when the Linux-user header differs from the session's user.",
      security,
      request: { params: PtySessionParams, query: PtyQuery.pick({ cols: true, rows: true }), headers: LinuxUserHeader },
      responses: { ...switching, ...errors(400, 403, 404) },
    }),
    upgradeOnly,
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/vms/{vm_id}/exec-stream",
      summary: "WebSocket: streaming exec (Capsule extension)",
      description: [
        "Runs one command with live pipes. Nothing runs before the client's first text frame, `{\"type\":\"start\",\"command\",\"cwd\"?,\"env\"?,\"user\"?,\"timeoutMs\"?}` (`ExecStart`): `command` runs through /bin/sh -c, `env` is added to its environment, `user` overrides `X-Freestyle-Vm-Linux-User-Id`. It must come within 10 s (else an error frame, VALIDATION_ERROR). Send secrets such as env there, never in the URL, where proxies log them. Older clients may instead pass `command`, `cwd`, `timeoutMs` in the query (no env); the process then starts right after the handshake.",
        "Stdin is flow-controlled: while the process does not take its stdin, the server stops reading the socket. The server pings every 30 s and drops a peer that answered none since the last one; revoking the socket's key closes it (close 1008) within seconds.",
        "Server → client: text `{\"type\":\"started\",\"pid\"}`; binary frames whose first byte is the stream (1 = stdout, 2 = stderr) followed by the bytes; finally text `{\"type\":\"exit\",\"exitCode\",\"signal\",\"timedOut\"}` and close 1000. Errors: text `{\"type\":\"error\",\"code\",\"message\"}` then close 1011.",
        "Client → server: binary frames are stdin; text `{\"type\":\"eof\"}` closes stdin; text `{\"type\":\"kill\",\"signal\"?}` signals the process (default SIGKILL). Closing the socket kills the process.",
      ].join("\n\n"),
      security,
      request: {
        params: VmParams,
        headers: LinuxUserHeader,
        query: z.object({
          command: z.string().optional().openapi({ description: "Older clients only: the command (else it comes in the `start` message)" }),
          cwd: z.string().optional(),
          timeoutMs: z.string().optional(),
        }),
      },
      responses: { ...switching, ...errors(400, 404) },
    }),
    upgradeOnly,
  );
}

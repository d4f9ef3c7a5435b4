/** Types shared by the app, the routes and the WebSocket handlers. */
import type { IncomingMessage } from "node:http";
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { EngineFeatures } from "@capsule/engine";
import type { Logger } from "pino";
import type { ConsoleAuth } from "./console/auth.js";
import type { KeyStore, Account } from "./keys.js";
import type { Metrics } from "./metrics.js";
import type { PreviewAccess } from "./preview/access.js";
import type { UploadSessions } from "./routes/v5/upload-sessions.js";
import type { VmService } from "./vm-service.js";

export interface AppEnv {
  Variables: { account: Account };
  /** What @hono/node-server passes; absent when the app is called directly (tests). */
  Bindings: { incoming?: IncomingMessage };
}

export type App = OpenAPIHono<AppEnv>;

export interface Deps {
  svc: VmService;
  keys: KeyStore;
  metrics: Metrics;
  log: Logger;
  limits: ServerLimits;
  /** Web console sessions (cookie) and PTY tokens; absent: the console cannot sign in. */
  console?: ConsoleAuth;
  /** Preview share links and public ports; absent: their routes are not served. */
  preview?: PreviewAccess;
  /** The v5 chunked uploads in progress; the server's shutdown ends them (UploadSessions.close). */
  uploads: UploadSessions;
  /** What the engine's sandboxes can do (network stack, checkpoints); absent: /healthz says only ok. */
  features?: EngineFeatures;
}

export interface ServerLimits {
  /** Largest request body accepted, bytes (base64 file PUTs are the big ones). */
  maxBodyBytes: number;
  /** Largest file GET answers, bytes (it travels base64 in JSON). */
  maxReadFileBytes: number;
  /**
   * Output an exec-await keeps per stream (stdout, stderr), bytes; the rest is dropped and the
   * answer says `truncated: true`. Bounds the server's memory per exec.
   */
  maxExecOutputBytes: number;
  /** An exec that may outlive the client's 300 s header timeout switches to early headers after this long. */
  execKeepaliveAfterMs: number;
  /** Interval of the keep-alive spaces once switched. */
  execKeepaliveEveryMs: number;
  /**
   * After an answer given before the request's body was read (401, 404, 415, …), the rest of the
   * body is read and dropped for up to this long, so the connection stays usable for the client's
   * next request; a body that takes longer, or is over `maxBodyBytes`, closes the connection.
   */
  unreadBodyDrainMs: number;
  /** WebSocket heartbeat: a ping this often; a peer that answered none since the last one is dropped. */
  wsHeartbeatMs: number;
  /** How often the keys and console sessions of open WebSockets are re-checked (revoked or signed out: closed). */
  wsAuthCheckMs: number;
  /** v5 chunked uploads open at once per account (each holds its chunks on the VM's disk until commit or abort). */
  maxUploadSessionsPerAccount: number;
  /** The declared sizes of an account's open v5 uploads, summed, bytes: what they may hold at once. */
  maxUploadHeldBytesPerAccount: number;
  /** A v5 upload no chunk, status or commit touched for this long is aborted and its chunks removed. */
  uploadIdleMs: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  maxBodyBytes: 64 * 1024 * 1024,
  maxReadFileBytes: 32 * 1024 * 1024,
  maxExecOutputBytes: 32 * 1024 * 1024,
  execKeepaliveAfterMs: 25_000,
  execKeepaliveEveryMs: 30_000,
  unreadBodyDrainMs: 10_000,
  wsHeartbeatMs: 30_000,
  wsAuthCheckMs: 2_000,
  maxUploadSessionsPerAccount: 8,
  maxUploadHeldBytesPerAccount: 32 * 1024 ** 3,
  uploadIdleMs: 15 * 60_000,
};

/** The Linux user of a request (`X-Freestyle-Vm-Linux-User-Id`), or undefined for root. */
export const LINUX_USER_HEADER = "x-freestyle-vm-linux-user-id";

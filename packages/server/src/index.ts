/**
 * @capsule/server — the Freestyle v1 wire-compatible API over the Capsule engine.
 * @module
 */
export { startServer } from "./server.js";
export type { RunningServer, StartOptions } from "./server.js";
export { resolveConfig, dbPath } from "./config.js";
export type { ServerConfig } from "./config.js";
export { openDb } from "./db.js";
export { installLastResortGuard, lastResortCount } from "./last-resort.js";
export { KeyStore } from "./keys.js";
export { openApiDocument } from "./openapi-doc.js";
export type { OpenApiDocument } from "./openapi-doc.js";
export type { Account, KeyInfo } from "./keys.js";

/**
 * @capsule/contract — the one API contract of Capsule: the error registry (`./errors`, no
 * imports), wire constants (`./wire`, no imports), the HTTP schemas (`./schemas`, zod) and the
 * WebSocket message schemas (`./ws`, zod). The server, the SDK and the console all use it. Code
 * that must stay light (the SDK, the CLI) imports `./errors` and `./wire` at run time and only
 * types from the rest.
 * @module
 */
export * from "./errors.js";
export * from "./wire.js";
export * from "./schemas.js";
export * from "./ws.js";

import path from "node:path";
import type { ExecControl, PtyControl, Request } from "@capsule/agent-protocol";
import { badRequest } from "./errors.js";

type Fields = Record<string, unknown>;

const SIGNALS = new Set(["SIGINT", "SIGTERM", "SIGKILL", "SIGHUP"]);
/** The kernel keeps terminal sizes in 16 bits. */
const MAX_TERMINAL_DIMENSION = 0xffff;
/** setTimeout fires at once for anything longer. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

function object(value: unknown, what: string): Fields {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw badRequest(`${what} must be a JSON object`);
  return value as Fields;
}

/** Every string ends up in a C string somewhere (argv, environ, a path), so none may hold NUL. */
function str(o: Fields, key: string): string {
  const v = o[key];
  if (typeof v !== "string") throw badRequest(`"${key}" must be a string`);
  return noNul(v, `"${key}"`);
}

function optStr(o: Fields, key: string): string | undefined {
  return o[key] === undefined ? undefined : str(o, key);
}

function optUint(o: Fields, key: string, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0 || v > max) throw badRequest(`"${key}" must be an integer from 0 to ${max}`);
  return v;
}

function dimension(o: Fields, key: string): number {
  const v = optUint(o, key, MAX_TERMINAL_DIMENSION);
  if (!v) throw badRequest(`"${key}" must be a positive integer`);
  return v;
}

function optDimension(o: Fields, key: string): number | undefined {
  return o[key] === undefined ? undefined : dimension(o, key);
}

function optBool(o: Fields, key: string): boolean | undefined {
  const v = o[key];
  if (v !== undefined && typeof v !== "boolean") throw badRequest(`"${key}" must be a boolean`);
  return v;
}

function optMode(o: Fields, key: string): number | undefined {
  return optUint(o, key, 0o7777);
}

function noNul(value: string, what: string): string {
  if (value.includes("\0")) throw badRequest(`${what} must not contain NUL bytes`);
  return value;
}

/** Absolute, NUL-free, normalised (no `..`, no doubled or trailing slashes). */
function absPath(o: Fields, key: string): string {
  const v = str(o, key);
  if (!path.posix.isAbsolute(v)) throw badRequest(`"${key}" must be an absolute path, got ${JSON.stringify(v)}`);
  const normal = path.posix.normalize(v);
  return normal.length > 1 && normal.endsWith("/") ? normal.slice(0, -1) : normal;
}

function optAbsPath(o: Fields, key: string): string | undefined {
  return o[key] === undefined ? undefined : absPath(o, key);
}

function optEnv(o: Fields, key: string): Record<string, string> | undefined {
  if (o[key] === undefined) return undefined;
  const env = object(o[key], `"${key}"`);
  for (const [name, value] of Object.entries(env)) {
    if (name === "" || name.includes("=") || name.includes("\0")) throw badRequest(`bad environment variable name ${JSON.stringify(name)}`);
    if (typeof value !== "string") throw badRequest(`environment variable ${name} must be a string`);
    noNul(value, `environment variable ${name}`);
  }
  return env as Record<string, string>;
}

function optArgv(o: Fields, key: string): string[] | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length === 0 || !v.every((a): a is string => typeof a === "string")) {
    throw badRequest(`"${key}" must be a non-empty array of strings`);
  }
  return v.map((a) => noNul(a, `"${key}"`));
}

function optUser(o: Fields): string | undefined {
  return optStr(o, "user");
}

/** Checks the host's first frame field by field; anything malformed is a BAD_REQUEST. */
export function parseRequest(raw: unknown): Request {
  const o = object(raw, "the request");
  const op = o.op;
  switch (op) {
    case "version":
    case "sync":
    case "pty.list":
      return { op };
    case "exec":
      return { op, user: optUser(o), command: str(o, "command"), cwd: optAbsPath(o, "cwd"), env: optEnv(o, "env"), timeoutMs: optUint(o, "timeoutMs", MAX_TIMEOUT_MS) };
    case "pty.open":
      return {
        op,
        user: optUser(o),
        command: optArgv(o, "command"),
        cols: dimension(o, "cols"),
        rows: dimension(o, "rows"),
        cwd: optAbsPath(o, "cwd"),
        env: optEnv(o, "env"),
        term: optStr(o, "term"),
      };
    case "pty.attach":
      return { op, user: optUser(o), sessionId: str(o, "sessionId"), cols: optDimension(o, "cols"), rows: optDimension(o, "rows") };
    case "pty.close":
      return { op, sessionId: str(o, "sessionId") };
    case "fs.read":
      return { op, user: optUser(o), path: absPath(o, "path"), offset: optUint(o, "offset"), length: optUint(o, "length") };
    case "fs.write":
      return { op, user: optUser(o), path: absPath(o, "path"), mode: optMode(o, "mode"), mkdirs: optBool(o, "mkdirs") };
    case "fs.stat":
    case "fs.list":
    case "fs.exists":
      return { op, user: optUser(o), path: absPath(o, "path") };
    case "fs.mkdir":
      return { op, user: optUser(o), path: absPath(o, "path"), recursive: optBool(o, "recursive"), mode: optMode(o, "mode") };
    case "fs.remove":
      return { op, user: optUser(o), path: absPath(o, "path"), recursive: optBool(o, "recursive") };
    default:
      throw badRequest(`unknown op ${JSON.stringify(op)}`);
  }
}

function signal(o: Fields): ExecControl {
  const s = o.signal;
  if (typeof s !== "string" || !SIGNALS.has(s)) throw badRequest(`"signal" must be one of ${[...SIGNALS].join(", ")}`);
  return { type: "signal", signal: s as ExecControl["signal"] };
}

function controlFields(payload: Buffer): Fields {
  try {
    return object(JSON.parse(payload.toString("utf8")), "a control message");
  } catch (err) {
    throw err instanceof SyntaxError ? badRequest("a control message is not valid JSON") : err;
  }
}

export function parseExecControl(payload: Buffer): ExecControl {
  const o = controlFields(payload);
  if (o.type !== "signal") throw badRequest(`unknown exec control ${JSON.stringify(o.type)}`);
  return signal(o);
}

export function parsePtyControl(payload: Buffer): PtyControl {
  const o = controlFields(payload);
  if (o.type === "resize") return { type: "resize", cols: dimension(o, "cols"), rows: dimension(o, "rows") };
  if (o.type === "signal") return signal(o);
  throw badRequest(`unknown pty control ${JSON.stringify(o.type)}`);
}

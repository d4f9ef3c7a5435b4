/**
 * Validators for both directions of the protocol. Each takes what came off the wire (a JSON
 * frame's payload, or the value parsed from it), checks it field by field, and returns a fresh
 * value built from the checked fields only, so nothing unchecked travels on; anything else throws
 * a {@link ProtocolError} saying which field is wrong. Hand-written and dependency-free on purpose:
 * the agent loads this at every VM start, and it must start fast.
 * @module
 */
import {
  AGENT_ERROR_CODES,
  AGENT_FEATURES,
  FILE_KINDS,
  MAX_CKPT_DEAF_MS,
  MAX_PTY_SLUG_LENGTH,
  MAX_TCP_PORT,
  MIN_TCP_PORT,
  PTY_SLUG_RE,
  type AgentErrorCode,
  type DirEntry,
  type ExecControl,
  type FileKind,
  type PtyControl,
  type PtySessionInfo,
  type Reply,
  type Request,
  type StatInfo,
} from "./messages.js";
import { parseServiceReply, parseServiceRequest } from "./service-validate.js";
import { SIGNAL_NAMES, isSignalName, type SignalName } from "./signals.js";
import { absPath, array, bool, fail, finite, intOrNull, object, oneOf, optAbsPath, optBool, optEnv, optStr, optUint, str, strings, uint, type Fields } from "./fields.js";

/** The kernel keeps terminal sizes in 16 bits. */
const MAX_TERMINAL_DIMENSION = 0xffff;
/** setTimeout fires at once for anything longer. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;
/** A signal name in an exit reply: `SIGKILL`, or a number the runtime has no name for. */
const SIGNAL_TEXT = /^[A-Z0-9+]{1,16}$/;

/** Deepest nesting of arrays and objects a JSON frame may have; every message of the protocol has at most 4. */
export const MAX_JSON_DEPTH = 32;

/**
 * True when `payload` nests arrays or objects deeper than `max` (strings skipped). One pass over
 * the bytes, before JSON.parse: 4 MiB of `[` parses into millions of arrays, about 110 MiB of heap
 * per frame (the agent fuzzer's find), for a message no peer needs.
 */
export function nestedDeeperThan(payload: Buffer, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < payload.length; i++) {
    const c = payload[i];
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped byte
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/** A JSON frame's payload as a value; bad UTF-8 becomes U+FFFD, bad JSON (or JSON nested deeper than {@link MAX_JSON_DEPTH}) a ProtocolError. */
export function parseJson(payload: Buffer, what: string): unknown {
  if (nestedDeeperThan(payload, MAX_JSON_DEPTH)) return fail(`${what} is nested deeper than ${MAX_JSON_DEPTH} levels`);
  try {
    return JSON.parse(payload.toString("utf8"));
  } catch {
    return fail(`${what} is not valid JSON`);
  }
}

function dimension(o: Fields, key: string): number {
  const v = uint(o, key, MAX_TERMINAL_DIMENSION);
  if (v === 0) fail(`"${key}" must be a positive integer`);
  return v;
}

function optDimension(o: Fields, key: string): number | undefined {
  return o[key] === undefined ? undefined : dimension(o, key);
}

function optMode(o: Fields, key: string): number | undefined {
  return optUint(o, key, 0o7777);
}

function optArgv(o: Fields, key: string): string[] | undefined {
  if (o[key] === undefined) return undefined;
  const argv = Array.isArray(o[key]) ? strings(o, key) : [];
  if (argv.length === 0) fail(`"${key}" must be a non-empty array of strings`);
  return argv;
}

function optSlug(o: Fields): string | undefined {
  const v = optStr(o, "slug");
  if (v !== undefined && (v.length > MAX_PTY_SLUG_LENGTH || !PTY_SLUG_RE.test(v))) fail(`"slug" must be 1 to ${MAX_PTY_SLUG_LENGTH} lower-case letters, digits and inner hyphens, not all digits`);
  return v;
}

function optUser(o: Fields): string | undefined {
  return optStr(o, "user");
}

// ------------------------------------------------------------------ host → agent

/** Checks the host's first frame (already parsed JSON) field by field. */
export function parseRequest(raw: unknown): Request {
  const o = object(raw, "the request");
  const op = o.op;
  if (typeof op === "string" && op.startsWith("svc.")) return parseServiceRequest(o);
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
        slug: optSlug(o),
        replaceOnExit: optBool(o, "replaceOnExit"),
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
    case "tcp.connect": {
      const port = uint(o, "port", MAX_TCP_PORT);
      if (port < MIN_TCP_PORT) fail(`"port" must be an integer from ${MIN_TCP_PORT} to ${MAX_TCP_PORT}`);
      return { op, port };
    }
    case "ckpt.prepare": {
      const deafMs = optUint(o, "deafMs", MAX_CKPT_DEAF_MS);
      if (deafMs === 0) fail(`"deafMs" must be from 1 to ${MAX_CKPT_DEAF_MS}`);
      return { op, deafMs };
    }
    default:
      return fail(`unknown op ${JSON.stringify(op)}`);
  }
}

function signal(o: Fields): { type: "signal"; signal: SignalName } {
  const s = o.signal;
  if (!isSignalName(s)) return fail(`"signal" must be one of ${SIGNAL_NAMES.join(", ")}`);
  return { type: "signal", signal: s };
}

/** A JSON frame the host sends during an `exec`. */
export function parseExecControl(payload: Buffer): ExecControl {
  const o = object(parseJson(payload, "a control message"), "a control message");
  if (o.type !== "signal") fail(`unknown exec control ${JSON.stringify(o.type)}`);
  return signal(o);
}

/** A JSON frame the host sends during a PTY attach. */
export function parsePtyControl(payload: Buffer): PtyControl {
  const o = object(parseJson(payload, "a control message"), "a control message");
  if (o.type === "resize") return { type: "resize", cols: dimension(o, "cols"), rows: dimension(o, "rows") };
  if (o.type === "signal") return signal(o);
  return fail(`unknown pty control ${JSON.stringify(o.type)}`);
}

// ------------------------------------------------------------------ agent → host

function sessionInfo(raw: unknown): PtySessionInfo {
  const o = object(raw, "a PTY session");
  const number = optUint(o, "number");
  const slug = optSlug(o);
  const replaceOnExit = optBool(o, "replaceOnExit");
  return {
    sessionId: str(o, "sessionId"),
    ...(number !== undefined ? { number } : {}),
    ...(slug !== undefined ? { slug } : {}),
    ...(replaceOnExit !== undefined ? { replaceOnExit } : {}),
    user: str(o, "user"),
    command: strings(o, "command"),
    cols: uint(o, "cols", MAX_TERMINAL_DIMENSION),
    rows: uint(o, "rows", MAX_TERMINAL_DIMENSION),
    pid: uint(o, "pid"),
    running: bool(o, "running"),
    exitCode: intOrNull(o, "exitCode"),
    createdAt: str(o, "createdAt"),
    attached: uint(o, "attached"),
  };
}

/** A version reply's `features`: only the ones this host knows are kept (an unknown one means nothing here). */
function optFeatures(o: Fields): { features?: string[] } {
  if (o.features === undefined) return {};
  const known: readonly string[] = Object.values(AGENT_FEATURES);
  return { features: [...new Set(strings(o, "features").filter((f) => known.includes(f)))] };
}

function statInfo(raw: unknown): StatInfo {
  const o = object(raw, "a stat");
  return { kind: oneOf<FileKind>(o, "kind", FILE_KINDS), size: uint(o, "size"), mode: uint(o, "mode", 0o7777), uid: uint(o, "uid"), gid: uint(o, "gid"), mtimeMs: finite(o, "mtimeMs") };
}

function dirEntry(raw: unknown): DirEntry {
  const o = object(raw, "a directory entry");
  return { name: str(o, "name"), kind: oneOf<FileKind>(o, "kind", FILE_KINDS) };
}

function signalOrNull(o: Fields): string | null {
  const v = o.signal;
  if (v === null) return null;
  if (typeof v !== "string" || !SIGNAL_TEXT.test(v)) return fail(`"signal" must be a signal name or null`);
  return v;
}

/** Checks a JSON frame (already parsed) from the agent. Which types an operation expects is the caller's check. */
export function parseReply(raw: unknown): Reply {
  const o = object(raw, "the agent's reply");
  const service = parseServiceReply(o);
  if (service) return service;
  const type = o.type;
  switch (type) {
    case "error":
      return { type, code: oneOf<AgentErrorCode>(o, "code", AGENT_ERROR_CODES), message: str(o, "message") };
    case "version":
      return { type, version: str(o, "version"), protocol: uint(o, "protocol"), pid: uint(o, "pid"), ...optFeatures(o) };
    case "exit": {
      const timedOut = optBool(o, "timedOut");
      return { type, code: intOrNull(o, "code"), signal: signalOrNull(o), ...(timedOut === undefined ? {} : { timedOut }) };
    }
    case "started":
      return { type, pid: uint(o, "pid") };
    case "session":
    {
      const created = optBool(o, "created");
      return { type, session: sessionInfo(o.session), ...(created !== undefined ? { created } : {}) };
    }
    case "sessions":
      return { type, sessions: array(o, "sessions").map(sessionInfo) };
    case "closed":
      return { type, sessionId: str(o, "sessionId"), exitCode: intOrNull(o, "exitCode") };
    case "stat":
      return { type, stat: statInfo(o.stat) };
    case "list":
      return { type, entries: array(o, "entries").map(dirEntry) };
    case "exists":
      return { type, exists: bool(o, "exists") };
    case "ok": {
      const size = optUint(o, "size");
      return size === undefined ? { type } : { type, size };
    }
    default:
      return fail(`unknown reply type ${JSON.stringify(type)}`);
  }
}

/**
 * What every API verb shares: the SDK client from --api-url/--api-key (or CAPSULE_* / FREESTYLE_*
 * env), output helpers (--json or tables), and error reporting with reliable exit codes.
 * @module
 */
import v8 from "node:v8";
import { CommanderError, type Command } from "commander";
import { Capsule, CapsuleError, type ErrorCode } from "@capsule/sdk";

/** Exit codes (also in `capsule --help`). */
export const EXIT = {
  OK: 0,
  /** Any other failure (server error, invalid request). */
  FAILURE: 1,
  /** Bad command line (unknown flag, missing argument). */
  USAGE: 2,
  /** The VM, snapshot, file, user or session does not exist. */
  NOT_FOUND: 3,
  /** No or invalid API URL/key. */
  AUTH: 4,
  /** The server could not be reached or the connection dropped. */
  CONNECTION: 5,
  /** `vm exec`: Capsule itself failed (the command's own status is passed through otherwise). */
  EXEC_FAILED: 125,
} as const;

export const EXIT_CODES_HELP = `
Exit codes:
  0    success
  1    failure (server error, invalid request)
  2    usage error (unknown flag, missing argument)
  3    not found (VM, snapshot, file, Linux user, terminal session)
  4    no or invalid API URL / key
  5    cannot reach the server, or the connection dropped
  vm exec passes the command's exit status through (128+n when killed by signal n) and
  exits 125 when Capsule itself failed; vm shell exits with the shell's status.

Errors go to stderr as "capsule: CODE: message" (CODE is the server's error code).
Connection: --api-url / --api-key, or CAPSULE_API_URL / CAPSULE_API_KEY
(FREESTYLE_API_URL / FREESTYLE_API_KEY also work).`;

// The SDK's codes (the contract's registry plus the SDK's client codes), checked at compile time.
const codes = (...c: ErrorCode[]): ReadonlySet<string> => new Set(c);
const NOT_FOUND = codes("VM_NOT_FOUND", "SNAPSHOT_NOT_FOUND", "FILE_NOT_FOUND", "USER_NOT_FOUND", "SESSION_NOT_FOUND", "SERVICE_NOT_FOUND", "NOT_FOUND");
const AUTH = codes("UNAUTHORIZED", "CONFIG_MISSING", "FORBIDDEN");
const CONNECTION = codes("NETWORK_ERROR", "CONNECTION_LOST");

/** A failure of the CLI itself (not of a server call), with its code and exit code. */
export class CliError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = "CliError";
  }
}

export function exitCodeFor(err: unknown): number {
  if (err instanceof CliError) return err.exitCode;
  if (!(err instanceof CapsuleError)) return EXIT.FAILURE;
  if (NOT_FOUND.has(err.code)) return EXIT.NOT_FOUND;
  if (AUTH.has(err.code)) return EXIT.AUTH;
  if (CONNECTION.has(err.code)) return EXIT.CONNECTION;
  return EXIT.FAILURE;
}

/** Prints the error as `capsule: CODE: message` and sets the exit code. */
export function report(err: unknown, exitCode = exitCodeFor(err)): void {
  if (err instanceof CapsuleError || err instanceof CliError) process.stderr.write(`capsule: ${err.code}: ${err.message}\n`);
  else process.stderr.write(`capsule: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = exitCode;
}

/** The SDK client for a command, from its global --api-url/--api-key or the environment. */
export function client(cmd: Command): Capsule {
  // fetch parses HTTP with WebAssembly (undici's llhttp). V8's optimizing tier compiles it on a
  // background thread that the process waits for before it exits, ~100 ms for every command; the
  // baseline tier (Liftoff) parses a CLI's few responses just as well.
  v8.setFlagsFromString("--liftoff-only");
  const o = cmd.optsWithGlobals<{ apiUrl?: string; apiKey?: string }>();
  return new Capsule({ ...(o.apiUrl ? { apiUrl: o.apiUrl } : {}), ...(o.apiKey ? { apiKey: o.apiKey } : {}) });
}

/** Wraps an action: errors are reported with their exit code instead of a stack trace. */
export function action<A extends unknown[]>(f: (this: Command, ...args: A) => Promise<void>): (this: Command, ...args: A) => Promise<void> {
  return async function (this: Command, ...args: A) {
    try {
      await f.apply(this, args);
    } catch (err) {
      if (err instanceof CommanderError) throw err; // usage errors: printed already, main sets the code
      report(err);
    }
  };
}

export function printJson(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
}

/** Prints rows as an aligned table with a header line. */
export function printTable(header: string[], rows: Array<Array<string | number | null | undefined>>): void {
  const cells = [header, ...rows.map((r) => r.map((c) => (c === null || c === undefined || c === "" ? "-" : String(c))))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  for (const r of cells) process.stdout.write(`${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join("  ")}\n`);
}

/** "3m ago"-style age of an ISO date. */
export function age(iso: string | null | undefined): string {
  if (!iso) return "-";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function bytes(n: number): string {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${u[i]}`;
}

export function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}`).join("\n")}\n`;
}

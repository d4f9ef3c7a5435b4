/**
 * A v5 exec in the guest: the default user, stdin, and the output limit. Buffered execs without
 * stdin are the engine's `exec`; with stdin the command is spawned with a real pipe, its input
 * written and closed, and its output collected under the same per-stream limit.
 * @module
 */
import type { Readable } from "node:stream";
import type { ExecResult } from "@capsule/engine";
import type { VmGuest } from "../../guest/gateway.js";

/** 0.2's default user is "the account holding uid 1000, or root in an image that has no such account". */
const DEFAULT_UID = 1000;
/** The most of the guest's /etc/passwd read to find that account: the file is the guest's to grow. */
const MAX_PASSWD_BYTES = 1024 * 1024;

/** The name of the VM's uid-1000 account, or undefined (root) when it has none. */
export async function defaultUser(guest: VmGuest): Promise<string | undefined> {
  const passwd = (await guest.readFile("/etc/passwd", { length: MAX_PASSWD_BYTES })).toString("utf8");
  for (const line of passwd.split("\n")) {
    const [name, , uid] = line.split(":");
    if (name && uid !== undefined && /^\d+$/.test(uid) && Number(uid) === DEFAULT_UID) return name;
  }
  return undefined;
}

export interface GuestExec {
  command: string;
  user: string | undefined;
  env: Record<string, string> | undefined;
  timeoutMs: number;
  stdin: Buffer | undefined;
  maxOutputBytes: number;
  /** Aborted when the client hangs up: the command's process group is killed. */
  signal: AbortSignal;
}

export async function execInGuest(guest: VmGuest, x: GuestExec): Promise<ExecResult> {
  const base = { command: x.command, timeoutMs: x.timeoutMs, ...(x.user !== undefined ? { user: x.user } : {}), ...(x.env !== undefined ? { env: x.env } : {}) };
  if (x.stdin === undefined) return guest.exec({ ...base, maxOutputBytes: x.maxOutputBytes, signal: x.signal });
  x.signal.throwIfAborted();
  const proc = await guest.spawn(base);
  const onAbort = () => proc.kill("SIGKILL");
  x.signal.addEventListener("abort", onAbort, { once: true });
  try {
    // A command that exits without reading all of its input closes the pipe under the write.
    proc.stdin.on("error", () => undefined);
    proc.stdin.end(x.stdin);
    const [out, err, exit] = await Promise.all([collect(proc.stdout, x.maxOutputBytes), collect(proc.stderr, x.maxOutputBytes), proc.exited]);
    return { stdout: out.text, stderr: err.text, ...exit, truncated: out.truncated || err.truncated };
  } finally {
    x.signal.removeEventListener("abort", onAbort);
  }
}

/** A stream's text, keeping at most `max` bytes (the rest is read and dropped). */
async function collect(stream: Readable, max: number): Promise<{ text: string; truncated: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  let truncated = false;
  for await (const chunk of stream) {
    const c = chunk as Buffer;
    const room = max - size;
    if (c.length > room) truncated = true;
    const kept = c.length > room ? c.subarray(0, Math.max(0, room)) : c;
    size += kept.length;
    if (kept.length > 0) chunks.push(kept);
  }
  return { text: Buffer.concat(chunks).toString("utf8"), truncated };
}

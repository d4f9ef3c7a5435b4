/**
 * The exec behind both exec-await routes (`/v1` and `/v5`): a command whose output is collected,
 * with `env` and an optional `stdin`. Without stdin it is the engine's `exec` (stdin at EOF from
 * the start); with stdin the command is spawned with a real pipe, its input written and closed,
 * and its output collected under the same per-stream limit.
 * @module
 */
import type { Readable } from "node:stream";
import type { ExecResult } from "@capsule/engine";
import type { VmGuest } from "./gateway.js";

export interface BufferedExec {
  command: string;
  /** Linux user in the VM; undefined: root. */
  user?: string | undefined;
  env?: Record<string, string> | undefined;
  /** Undefined: no timeout. */
  timeoutMs?: number | undefined;
  /** The command's whole input; undefined: stdin is at EOF. */
  stdin?: Buffer | undefined;
  /** Output kept per stream; the rest is dropped and `truncated` set. */
  maxOutputBytes: number;
  /** Aborted when the client hangs up: the command's process group is killed. */
  signal: AbortSignal;
}

export async function bufferedExec(guest: VmGuest, x: BufferedExec): Promise<ExecResult> {
  const base = {
    command: x.command,
    ...(x.user !== undefined ? { user: x.user } : {}),
    ...(x.env !== undefined ? { env: x.env } : {}),
    ...(x.timeoutMs !== undefined ? { timeoutMs: x.timeoutMs } : {}),
  };
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

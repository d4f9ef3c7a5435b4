/**
 * What the compat-v5 tests share: firewalls, the client for a server, sha256, the check that a
 * call failed with the client's own error, and a PTY session's output. Nothing here imports the
 * server or node:test, so the Node 22 walk-through (walkthrough.ts, run outside the test runner)
 * uses it too.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Freestyle, FreestyleApiError } from "freestyle";

/** A firewall that allows nothing (what a server without egress serves). */
export const NOTHING = { rules: [] };
/** A firewall that allows the public internet (needs a server with egress). */
export const INTERNET = { rules: [{ action: "allow" as const, source: {}, destination: { public: true as const } }] };

export function client(url: string, apiKey: string, fetch?: typeof globalThis.fetch): Freestyle {
  return new Freestyle({ baseUrl: url, apiKey, ...(fetch ? { fetch } : {}) });
}

export const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

/** Rejects with the client's FreestyleApiError carrying this status and code. */
export async function rejectsApi(p: Promise<unknown>, status: number, code: string): Promise<FreestyleApiError> {
  const err = await p.then(
    () => assert.fail(`expected ${status} ${code}, got success`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof FreestyleApiError, `a FreestyleApiError, got ${String(err)}`);
  assert.equal(err.status, status, err.message);
  assert.equal(err.code, code, err.message);
  assert.ok(err.message.length > 5);
  return err;
}

/** A PTY session's output so far, and a wait for a pattern in it. */
export function terminal() {
  let text = "";
  const waiters = new Set<() => void>();
  return {
    onData: (b: Uint8Array) => {
      text += Buffer.from(b).toString("utf8");
      for (const w of waiters) w();
    },
    text: () => text,
    async waitFor(re: RegExp, ms = 10_000): Promise<void> {
      const deadline = Date.now() + ms;
      while (!re.test(text)) {
        if (Date.now() > deadline) throw new Error(`no ${re} in ${JSON.stringify(text.slice(-500))}`);
        await new Promise<void>((resolve) => {
          waiters.add(resolve);
          setTimeout(resolve, 100);
        }).finally(() => waiters.clear());
      }
    },
  };
}

/** An `onExit` for a PTY session and the exit code it resolves with. */
export function exitPromise(): { onExit: (code: number) => void; exited: Promise<number> } {
  let onExit!: (code: number) => void;
  const exited = new Promise<number>((resolve) => (onExit = resolve));
  return { onExit, exited };
}

/** `p`, or a failure naming `what` after `ms`. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, sleep(ms).then(() => assert.fail(`${what} within ${ms} ms`))]);
}

/**
 * What the compat-v5 tests share: firewalls, the client for a server, sha256, the check that a
 * call failed with the client's own error, a PTY session's output, and a fetch that interrupts
 * the chunked upload (with the check that it resumed). Nothing here imports the server or
 * node:test, so the Node 22 walk-through (walkthrough.ts, run outside the test runner) uses it too.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Freestyle, FreestyleApiError } from "freestyle";
import type { UploadStatus } from "@capsule/contract/v5";

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

/** `p`, or a failure naming `what` after `ms`. The timer goes with the race: a script's Node exits once its work is done. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => (timer = setTimeout(() => reject(new assert.AssertionError({ message: `${what} within ${ms} ms` })), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A fetch for the client that can cut one request's body half-way or rewrite one JSON body. */
export function meddlingFetch(plan: { cutChunkAt?: number; tamperSha256?: boolean }) {
  const log: Array<{ method: string; url: string; status: number; received?: number }> = [];
  let cut = false;
  const impl = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const url = String(input);
    const method = init.method ?? "GET";
    let req = init;
    let abort: AbortController | undefined;
    if (method === "PUT" && plan.cutChunkAt !== undefined && !cut && url.includes(`/fs/uploads/`) && url.endsWith(`offset=${plan.cutChunkAt}`)) {
      cut = true;
      // Half of the chunk goes out, then the request is aborted: the server sees a body that stops.
      const bytes = init.body as Uint8Array;
      abort = new AbortController();
      const body = new ReadableStream<Uint8Array>({
        start(ctrl) {
          ctrl.enqueue(bytes.subarray(0, bytes.length >> 1));
        },
        async pull() {
          await sleep(500);
          abort?.abort(new Error("cut mid-chunk by the test"));
        },
      });
      req = { ...init, body, signal: abort.signal, duplex: "half" } as RequestInit;
    }
    if (method === "POST" && plan.tamperSha256 && url.endsWith("/fs/uploads")) {
      const body = JSON.parse(String(init.body)) as { sha256?: string };
      assert.ok(body.sha256, "the client sends the file's sha256");
      req = { ...init, body: JSON.stringify({ ...body, sha256: body.sha256.replace(/^./, (c) => (c === "0" ? "1" : "0")) }) };
    }
    try {
      const res = await fetch(url, req);
      const entry: (typeof log)[number] = { method, url, status: res.status };
      if (method === "GET" && url.includes("/fs/uploads/") && res.ok) entry.received = ((await res.clone().json()) as UploadStatus).receivedBytes;
      log.push(entry);
      return res;
    } catch (err) {
      log.push({ method, url, status: 0 });
      throw err;
    }
  };
  return { fetch: impl as typeof fetch, log, calls: () => log.map(traceLine) };
}

type Logged = ReturnType<typeof meddlingFetch>["log"][number];

/** `PUT uploads/ID?offset=4194304 200`, `GET uploads/ID 200 @4194304`: a logged upload request, ids hidden. */
function traceLine(e: Logged): string {
  const where = e.url.replace(/^.*\/fs\/uploads/, "uploads").replace(/up-[0-9a-f]+/, "ID");
  return `${e.method} ${where} ${e.status}${e.received !== undefined ? ` @${e.received}` : ""}`;
}

/**
 * Asserts that an upload's requests (meddlingFetch's `calls()`) show the chunk at `cutAt` failing
 * on the client's side, then only status polls at `cutAt` (the half that arrived is not counted)
 * and perhaps a 409 while the server still finished the cut request, then that chunk resent;
 * every chunk in `chunkStarts` stored once, and the commit last.
 */
export function assertResumedOnce(calls: string[], cutAt: number, chunkStarts: number[]): void {
  const trace = calls.join("\n");
  const cut = calls.indexOf(`PUT uploads/ID?offset=${cutAt} 0`);
  assert.ok(cut > 0, `the cut chunk failed on the client's side:\n${trace}`);
  const resent = calls.indexOf(`PUT uploads/ID?offset=${cutAt} 200`);
  assert.ok(resent > cut, trace);
  const between = calls.slice(cut + 1, resent);
  assert.ok(between.includes(`GET uploads/ID 200 @${cutAt}`), trace);
  assert.deepEqual(between.filter((c) => c !== `GET uploads/ID 200 @${cutAt}` && c !== `PUT uploads/ID?offset=${cutAt} 409`), [], trace);
  assert.deepEqual(calls.filter((c) => / 200$/.test(c) && c.startsWith("PUT")), chunkStarts.map((o) => `PUT uploads/ID?offset=${o} 200`), trace);
  assert.equal(calls.at(-1), "POST uploads/ID/commit 204", trace);
}


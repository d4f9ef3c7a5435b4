/**
 * A long exec's answer when it may outlive the client's wait for headers (undici gives up after
 * 300 s without them, seed-calls S11): 200 headers at once, a space every few seconds, then the
 * JSON. `/v1` and `/v5` exec-await both answer this way.
 * @module
 */

/** Past this timeout an exec may outlive the client's wait for headers. */
export const HEADERS_DEADLINE_MS = 280_000;

/** Resolves to undefined after `ms`, without holding the process open. */
export function sleep(ms: number): Promise<undefined> {
  return new Promise((r) => setTimeout(() => r(undefined), ms).unref());
}

/**
 * A body of spaces, one now and one every `everyMs`, then `run`'s answer as JSON (or
 * `onError`'s, if it fails). A client that goes away stops the spaces.
 */
export function spacesThenJson<T>(run: Promise<T>, everyMs: number, onError: (err: unknown) => T): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let timer: NodeJS.Timeout | undefined;
  let cancelled = false;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode(" "));
      timer = setInterval(() => controller.enqueue(encoder.encode(" ")), everyMs);
      void run
        .then((a) => a, onError)
        .then((a) => {
          clearInterval(timer);
          if (cancelled) return; // the client went away; its command was ended through the request's signal
          controller.enqueue(encoder.encode(JSON.stringify(a)));
          controller.close();
        });
    },
    cancel() {
      cancelled = true;
      clearInterval(timer);
    },
  });
}

/**
 * The body of a raw upload as a Node stream. Under @hono/node-server it is read from the
 * IncomingMessage itself: the web Request's body is `Readable.toWeb(incoming)`, which copies every
 * chunk, and turning that back into a Node stream for the guest put each chunk through two more
 * stream layers. Called directly (`app.request` in tests) there is no IncomingMessage, and the
 * web body is adapted instead.
 * @module
 */
import type { IncomingMessage } from "node:http";
import { finished, Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import type { Context } from "hono";
import type { AppEnv } from "./context.js";

/** For routes whose body nothing else reads (app.ts exempts them from the JSON body limit). */
export function requestBody(c: Context<AppEnv>): Readable {
  const incoming = c.env?.incoming;
  if (incoming) return fromIncoming(incoming);
  const raw = c.req.raw.body;
  return raw ? Readable.fromWeb(raw as unknown as WebReadableStream<Uint8Array>) : Readable.from([]);
}

/**
 * A view of the IncomingMessage that reads it only once it is read itself, and that lets go of
 * it when destroyed instead of destroying it: a route that refuses a body before reading it (an
 * offset that does not match) or gives up on one (a chunk over its limit, a failed guest write)
 * leaves the rest to app.ts's drain, and the client reads the error. Destroying the
 * IncomingMessage would reset the connection first. A client that goes away mid-body fails the
 * stream, as the web body did.
 */
function fromIncoming(incoming: IncomingMessage): Readable {
  const onData = (chunk: Buffer) => {
    if (!body.push(chunk)) incoming.pause();
  };
  const onEnd = () => body.push(null);
  const stopWatching = finished(incoming, (err) => {
    if (err) body.destroy(err);
  });
  let reading = false;
  const body = new Readable({
    read() {
      if (!reading) {
        reading = true;
        incoming.on("data", onData).once("end", onEnd);
      }
      incoming.resume();
    },
    destroy(err, callback) {
      stopWatching();
      incoming.off("data", onData).off("end", onEnd).pause();
      callback(err);
    },
  });
  return body;
}

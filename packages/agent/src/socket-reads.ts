/**
 * Large reads on a host connection. Node reads a stream socket 64 KiB at a time, each read into a
 * buffer of its own; inside gVisor every read is a trip through the sandbox's kernel (receiving an
 * upload cost about 90 µs of the VM's CPU per 64 KiB read). Node's `onread` socket option reads
 * into buffers we hand it, of any size, so one read takes whatever the kernel has queued (about
 * 200 KiB on a unix socket here). In Node 20 only a socket built with `new net.Socket()` takes
 * that option, and net.Server builds the ones it accepts itself: the accepted connection's handle
 * moves into a socket of our own, built the way net.Server builds its own (`handle`) plus
 * `onread`. The reads are pushed into that socket, so it still emits `data` and keeps
 * pause/resume and backpressure.
 * @module
 */
import net from "node:net";

/** Bytes of one read buffer; a read takes the rest of the current one, so this bounds a read. */
const SLAB_BYTES = 1024 * 1024;
/** A slab with less room than this left is retired (what Node itself offers a read). */
const MIN_READ_BYTES = 64 * 1024;

/**
 * Hands out the unused rest of a slab for each read. A chunk given to the stream is a view of the
 * slab that is never written again, so it may be kept (decoded frames, queued writes); a slab is
 * freed when its last view is.
 */
class ReadSlabs {
  #slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
  #used = 0;

  /** Where the next read goes. */
  next(): Buffer {
    if (SLAB_BYTES - this.#used < MIN_READ_BYTES) {
      this.#slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
      this.#used = 0;
    }
    return this.#slab.subarray(this.#used);
  }

  /** The `n` bytes the last read put at {@link next}'s buffer, as a chunk of their own. */
  take(n: number): Buffer {
    const chunk = this.#slab.subarray(this.#used, this.#used + n);
    this.#used += n;
    return chunk;
  }
}

/** What net.Server's accepted sockets hold that this module moves (Node internals, stable since v12). */
interface HandleOwner {
  _handle: { reading: boolean; readStop(): number } | null;
}

/**
 * The accepted socket `accepted` as one that reads up to {@link SLAB_BYTES} at a time. Call it in
 * the server's connection listener, before any read reached `accepted`. `accepted` keeps no
 * handle and is destroyed when the new socket closes, so its `close` listeners and the server's
 * connection count behave as before. A socket that is not a fresh connected one comes back as is.
 */
export function withLargeReads(accepted: net.Socket): net.Socket {
  const owner = accepted as unknown as HandleOwner;
  const handle = owner._handle;
  if (!(accepted instanceof net.Socket) || handle === null || accepted.connecting || accepted.bytesRead > 0) return accepted;
  // Node starts reading as it accepts; the new socket starts again only if it sees it stopped.
  handle.readStop();
  handle.reading = false;
  owner._handle = null;
  const slabs = new ReadSlabs();
  // push's false stops the reads until the stream is read again, as Node's own push does.
  const sock: net.Socket = new net.Socket({ handle, allowHalfOpen: accepted.allowHalfOpen, onread: { buffer: () => slabs.next(), callback: (n: number) => sock.push(slabs.take(n)) } } as net.SocketConstructorOpts);
  sock.once("close", () => accepted.destroy());
  return sock;
}

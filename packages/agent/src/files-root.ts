import { randomBytes } from "node:crypto";
import { constants, type Stats } from "node:fs";
import fs, { type FileHandle } from "node:fs/promises";
import path from "node:path";
import { Writable } from "node:stream";
import { FRAME_HEADER_BYTES, FrameType, MAX_FRAME_PAYLOAD, writeFrameHeader, type FsReadRequest, type FsWriteRequest } from "@capsule/agent-protocol";
import type { Conn } from "./conn.js";
import { AgentError, badRequest } from "./errors.js";
import type { FileOps } from "./files.js";
import { log } from "./log.js";
import { dirEntry, sortEntries, statInfo } from "./stat-info.js";

/** File bytes per frame read; each of the READ_BUFFERS buffers holds a frame header and this much. */
const READ_CHUNK = MAX_FRAME_PAYLOAD;
/** One buffer is filled from the file while the other is on its way to the host. */
const READ_BUFFERS = 2;
/**
 * Bytes of one file write. Uploads are copied into blocks of this size and written a block at a
 * time: inside gVisor each write costs a fixed few hundred µs besides its bytes, and writing
 * straight from the socket's reads (fresh memory, ~200 KiB each) cost twice the copy into a
 * block that stays mapped (measured in a VM: 100 MB as 1 MiB writes ~90 ms of VM CPU, as 256 KiB
 * writes ~200 ms, from fresh buffers 65 ms more).
 */
const WRITE_BLOCK = MAX_FRAME_PAYLOAD;
/** Blocks per upload: one is filled while the other is written. */
const WRITE_BLOCKS = 2;
/** Upload bytes the sink queues beyond its blocks before the socket is paused. */
const WRITE_QUEUE = WRITE_BLOCK;
const DEFAULT_FILE_MODE = 0o644;
const DEFAULT_DIR_MODE = 0o755;

/** Opens a regular file for reading; O_NONBLOCK so a FIFO at the path cannot hang a worker thread. */
async function openRegular(file: string): Promise<{ handle: FileHandle; st: Stats }> {
  const handle = await fs.open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    const st = await handle.stat();
    if (st.isDirectory()) throw new AgentError("IS_A_DIRECTORY", `${file} is a directory`);
    if (!st.isFile()) throw badRequest(`${file} is not a regular file`);
    return { handle, st };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

async function read(conn: Conn, req: FsReadRequest): Promise<void> {
  const { handle, st } = await openRegular(req.path);
  try {
    conn.sendJson({ type: "stat", stat: statInfo(st) });
    conn.onFrames(() => undefined);
    await sendFile(conn, handle, req.offset ?? 0, req.length ?? Infinity);
  } finally {
    await handle.close();
  }
  conn.send(FrameType.Eof, Buffer.alloc(0));
  conn.finish();
}

/**
 * Sends `length` bytes from `start` (or up to the end of the file) as Stdout frames, read
 * straight into reused buffers with room for the frame header in front: no buffer per chunk and
 * no copy, which inside gVisor (every fresh page a fault the sandbox's kernel serves) cost more
 * than the reads. A buffer is refilled only once the socket has taken it, which is also the
 * backpressure; a host that hangs up ends the loop.
 */
async function sendFile(conn: Conn, handle: FileHandle, start: number, length: number): Promise<void> {
  const buffers = Array.from({ length: READ_BUFFERS }, () => Buffer.allocUnsafe(FRAME_HEADER_BYTES + READ_CHUNK));
  const sent: Array<Promise<void>> = [];
  let position = start;
  let left = length;
  for (let i = 0; left > 0; i = (i + 1) % READ_BUFFERS) {
    await sent[i];
    if (conn.finished) break;
    const buffer = buffers[i] as Buffer;
    const { bytesRead } = await handle.read(buffer, FRAME_HEADER_BYTES, Math.min(READ_CHUNK, left), position);
    if (bytesRead === 0) break;
    position += bytesRead;
    left -= bytesRead;
    writeFrameHeader(buffer, FrameType.Stdout, bytesRead);
    sent[i] = conn.sendFrame(buffer.subarray(0, FRAME_HEADER_BYTES + bytesRead));
  }
  await Promise.all(sent);
}

/** The mode a rewrite keeps: the existing regular file's, else the default. */
async function keptMode(file: string): Promise<number> {
  const st = await fs.lstat(file).catch(() => undefined);
  return st?.isFile() ? st.mode & 0o7777 : DEFAULT_FILE_MODE;
}

/**
 * Bytes written after which the file is flushed in the background while the upload goes on, so
 * the commit's fsync waits for the last part only (alone, it took 100 ms of a 100 MB upload here).
 */
const FLUSH_BYTES = 8 * 1024 * 1024;

/**
 * A Writable onto a file we keep hold of (fs.WriteStream would close it before we can fsync).
 * Upload pieces are copied into {@link WRITE_BLOCKS} reused blocks; a full block is written
 * while the next one fills, and a piece waits only when both are taken, which (through the
 * Writable's queue) is the upload's backpressure. It finishes once the last partial block is
 * written and the background flush, if one runs, is done.
 */
export function fileSink(handle: FileHandle): Writable {
  const blocks = Array.from({ length: WRITE_BLOCKS }, () => Buffer.allocUnsafe(WRITE_BLOCK));
  const written: Array<Promise<void>> = [];
  let current = 0;
  let filled = 0;
  /** Where in the file the current block goes. Two blocks may be in flight at once, so every write names its position. */
  let position = 0;
  let unflushed = 0;
  let flushing: Promise<void> | undefined;
  let failure: Error | undefined;
  const flush = () => {
    unflushed = 0;
    flushing = handle
      .datasync()
      .catch((err: Error) => void (failure ??= err))
      .finally(() => (flushing = undefined));
  };
  /** Starts writing the current block's `filled` bytes and moves on to the next block once it is free. */
  const writeBlock = async () => {
    const bytes = filled;
    const at = position;
    position += bytes;
    written[current] = writeFully(handle, (blocks[current] as Buffer).subarray(0, bytes), at).then(() => {
      unflushed += bytes;
      if (unflushed >= FLUSH_BYTES && !flushing) flush();
    }, (err: Error) => void (failure ??= err));
    current = (current + 1) % WRITE_BLOCKS;
    filled = 0;
    await written[current];
  };
  const take = async (chunk: Buffer) => {
    for (let off = 0; off < chunk.length && failure === undefined; ) {
      const n = chunk.copy(blocks[current] as Buffer, filled, off);
      off += n;
      filled += n;
      if (filled === WRITE_BLOCK) await writeBlock();
    }
  };
  return new Writable({
    highWaterMark: WRITE_QUEUE,
    write(chunk: Buffer, _encoding, callback) {
      take(chunk).then(() => callback(failure), callback);
    },
    final(callback) {
      const last = filled > 0 ? writeBlock() : Promise.resolve();
      void last
        .then(() => Promise.all(written))
        .then(() => flushing)
        .then(() => callback(failure));
    },
  });
}

/** Writes all of `data` at file offset `at` (a short write continues where it stopped). */
async function writeFully(handle: Pick<FileHandle, "write">, data: Buffer, at: number): Promise<void> {
  for (let off = 0; off < data.length; ) off += (await handle.write(data, off, data.length - off, at + off)).bytesWritten;
}

/**
 * Streams into a fresh temp file beside the target, then fsync and rename over it: readers see
 * the old file or the whole new one, and a symlink at the target is replaced, not followed.
 * The mode is set through the descriptor, never by path, which a user owning the directory
 * could swap for a symlink.
 */
async function write(conn: Conn, req: FsWriteRequest): Promise<void> {
  const dir = path.posix.dirname(req.path);
  if (req.mkdirs) await fs.mkdir(dir, { recursive: true });
  const mode = req.mode ?? (await keptMode(req.path));
  const tmp = path.posix.join(dir, `.capsule-write-${randomBytes(6).toString("hex")}`);
  const handle = await fs.open(tmp, "wx", 0o600);
  const out = fileSink(handle);
  let size = 0;
  let state: "writing" | "committing" | "done" = "writing";
  const discard = async () => {
    state = "done";
    out.destroy();
    await handle.close().catch(() => undefined);
    await fs.rm(tmp, { force: true }).catch((err: unknown) => log(`cannot remove ${tmp}: ${String(err)}`));
  };
  const abort = (err: unknown) => {
    conn.fail(err);
    void discard();
  };
  const commit = async () => {
    state = "committing";
    await handle.chmod(mode);
    await handle.sync();
    await handle.close();
    await fs.rename(tmp, req.path);
    state = "done";
    conn.sendJson({ type: "ok", size });
    conn.finish();
  };
  out.once("error", abort);
  out.once("finish", () => void commit().catch(abort));
  conn.onClose(() => {
    if (state === "writing") void discard();
  });
  conn.onFrames((frame) => {
    if (frame.type === FrameType.Stdin && !out.writableEnded) {
      size += frame.payload.length;
      conn.writeTo(out, frame.payload);
    } else if (frame.type === FrameType.Eof) {
      out.end();
    } else {
      throw badRequest(`unexpected frame type ${frame.type} during fs.write`);
    }
  });
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.stat(file);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return false;
    throw err;
  }
}

async function mkdir(dir: string, recursive: boolean, mode: number | undefined): Promise<void> {
  await fs.mkdir(dir, { recursive, mode: mode ?? DEFAULT_DIR_MODE });
  // mkdir's mode is filtered through the umask; an explicit mode must hold exactly.
  if (mode !== undefined) await fs.chmod(dir, mode);
}

async function remove(file: string, recursive: boolean): Promise<void> {
  const st = await fs.lstat(file);
  if (!st.isDirectory()) await fs.unlink(file);
  else if (recursive) await fs.rm(file, { recursive: true });
  else await fs.rmdir(file);
}

export const rootFileOps: FileOps = {
  read,
  write,
  stat: async (file) => statInfo(await fs.lstat(file)),
  list: async (dir) => sortEntries((await fs.readdir(dir, { withFileTypes: true })).map(dirEntry)),
  exists,
  mkdir,
  remove,
};

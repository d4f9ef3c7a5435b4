import { randomBytes } from "node:crypto";
import { constants, type Stats } from "node:fs";
import fs, { type FileHandle } from "node:fs/promises";
import path from "node:path";
import { Writable } from "node:stream";
import { FrameType, type FsReadRequest, type FsWriteRequest } from "@capsule/agent-protocol";
import type { Conn } from "./conn.js";
import { AgentError, badRequest } from "./errors.js";
import type { FileOps } from "./files.js";
import { log } from "./log.js";
import { dirEntry, sortEntries, statInfo } from "./stat-info.js";

const READ_CHUNK = 256 * 1024;
const WRITE_BUFFER = 1024 * 1024;
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
  conn.sendJson({ type: "stat", stat: statInfo(st) });
  const start = req.offset ?? 0;
  if (req.length === 0) {
    await handle.close();
    conn.send(FrameType.Eof, Buffer.alloc(0));
    conn.finish();
    return;
  }
  const end = req.length === undefined ? undefined : start + req.length - 1;
  const stream = handle.createReadStream({ start, end, highWaterMark: READ_CHUNK });
  conn.pipeFrom(stream, FrameType.Stdout);
  stream.once("end", () => {
    conn.send(FrameType.Eof, Buffer.alloc(0));
    conn.finish();
  });
  stream.once("error", (err) => conn.fail(err));
  conn.onClose(() => stream.destroy());
  conn.onFrames(() => undefined);
}

/** The mode a rewrite keeps: the existing regular file's, else the default. */
async function keptMode(file: string): Promise<number> {
  const st = await fs.lstat(file).catch(() => undefined);
  return st?.isFile() ? st.mode & 0o7777 : DEFAULT_FILE_MODE;
}

/** A Writable onto a file we keep hold of (fs.WriteStream would close it before we can fsync). */
function fileSink(handle: FileHandle): Writable {
  return new Writable({
    highWaterMark: WRITE_BUFFER,
    write(chunk: Buffer, _encoding, callback) {
      writeFully(handle, chunk).then(() => callback(), callback);
    },
  });
}

async function writeFully(handle: FileHandle, data: Buffer): Promise<void> {
  for (let off = 0; off < data.length; ) off += (await handle.write(data, off)).bytesWritten;
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

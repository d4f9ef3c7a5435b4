import type { Readable, Writable } from "node:stream";
import { FrameType, type FsReadRequest, type FsWriteRequest } from "@capsule/agent-protocol";
import type { Conn } from "./conn.js";
import { AgentError, badRequest } from "./errors.js";
import type { FileOps } from "./files.js";
import { helperDone, runHelper, spawnHelper } from "./helper.js";
import { parseListing, parseStatLine } from "./stat-info.js";
import type { UserInfo } from "./users.js";

const flag = (value: boolean | undefined): string => (value ? "1" : "0");
const octal = (mode: number | undefined): string => (mode === undefined ? "-" : mode.toString(8));

function readAll(stream: Readable): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    stream.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
    stream.once("end", () => resolve(text));
    stream.once("error", reject);
  });
}

/** The helper streams the file to its stdout after putting the stat line on fd 3. */
async function read(user: UserInfo, conn: Conn, req: FsReadRequest): Promise<void> {
  const length = req.length === undefined ? "-" : String(req.length);
  const child = spawnHelper(user, ["--read", req.path, String(req.offset ?? 0), length], ["ignore", "pipe", "pipe", "pipe"]);
  const done = helperDone(child);
  conn.onClose(() => child.kill("SIGKILL"));
  const statLine = await readAll(child.stdio[3] as Readable);
  if (statLine === "") {
    await done;
    throw new AgentError("INTERNAL", "capsule-spawn --read gave no stat line");
  }
  conn.sendJson({ type: "stat", stat: parseStatLine(statLine) });
  conn.pipeFrom(child.stdout as Readable, FrameType.Stdout);
  conn.onFrames(() => undefined);
  await done;
  conn.send(FrameType.Eof, Buffer.alloc(0));
  conn.finish();
}

/**
 * The helper writes stdin to a temp file and renames it into place only once it reads the
 * commit byte on fd 3, which we send after the host's Eof. If the host hangs up first, both
 * pipes close without it and the helper removes the temp file.
 */
async function write(user: UserInfo, conn: Conn, req: FsWriteRequest): Promise<void> {
  const child = spawnHelper(user, ["--write", req.path, octal(req.mode), flag(req.mkdirs)], ["pipe", "ignore", "pipe", "pipe"]);
  const done = helperDone(child);
  const data = child.stdin as Writable;
  const commit = child.stdio[3] as Writable;
  // The helper may fail and exit before reading everything; its exit status tells why.
  data.on("error", () => undefined);
  commit.on("error", () => undefined);
  let size = 0;
  conn.onClose(() => {
    data.destroy();
    commit.destroy();
  });
  conn.onFrames((frame) => {
    if (frame.type === FrameType.Stdin && data.writable) {
      size += frame.payload.length;
      conn.writeTo(data, frame.payload);
    } else if (frame.type === FrameType.Eof) {
      data.end();
      commit.end("1");
    } else if (frame.type !== FrameType.Stdin) {
      throw badRequest(`unexpected frame type ${frame.type} during fs.write`);
    }
  });
  await done;
  conn.sendJson({ type: "ok", size });
  conn.finish();
}

async function exists(user: UserInfo, path: string): Promise<boolean> {
  try {
    await runHelper(user, ["--stat", path, "1"]);
    return true;
  } catch (err) {
    if (err instanceof AgentError && (err.code === "FILE_NOT_FOUND" || err.code === "NOT_A_DIRECTORY")) return false;
    throw err;
  }
}

/** Every operation runs in capsule-spawn after it became the user. */
export function userFileOps(user: UserInfo): FileOps {
  return {
    read: (conn, req) => read(user, conn, req),
    write: (conn, req) => write(user, conn, req),
    stat: async (path) => parseStatLine((await runHelper(user, ["--stat", path, "0"])).toString("utf8")),
    list: async (path) => parseListing(await runHelper(user, ["--list", path])),
    exists: (path) => exists(user, path),
    mkdir: async (path, recursive, mode) => void (await runHelper(user, ["--mkdir", path, octal(mode), flag(recursive)])),
    remove: async (path, recursive) => void (await runHelper(user, ["--remove", path, flag(recursive)])),
  };
}

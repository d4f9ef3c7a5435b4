import type { DirEntry, FsMkdirRequest, FsPathRequest, FsReadRequest, FsRemoveRequest, FsWriteRequest, StatInfo } from "@capsule/agent-protocol";
import type { Conn } from "./conn.js";
import { AgentError } from "./errors.js";
import { rootFileOps } from "./files-root.js";
import { userFileOps } from "./files-user.js";
import { resolveUser } from "./users.js";

export type FsRequest = FsReadRequest | FsWriteRequest | FsPathRequest | FsMkdirRequest | FsRemoveRequest;

/** File operations as one identity: root through Node's fs, anyone else through capsule-spawn. */
export interface FileOps {
  /** Replies `stat`, streams the bytes, then `Eof`. */
  read(conn: Conn, req: FsReadRequest): Promise<void>;
  /** Takes Stdin frames up to `Eof`, then replies `ok` once the file is in place. */
  write(conn: Conn, req: FsWriteRequest): Promise<void>;
  /** Describes the path itself (a symlink is reported as one). */
  stat(path: string): Promise<StatInfo>;
  list(path: string): Promise<DirEntry[]>;
  /** Follows symlinks, like `test -e`. */
  exists(path: string): Promise<boolean>;
  mkdir(path: string, recursive: boolean, mode: number | undefined): Promise<void>;
  remove(path: string, recursive: boolean): Promise<void>;
}

/**
 * Root's requests (and requests naming a uid-0 user) need no privilege drop. Anyone else's go
 * through capsule-spawn running as that user, so a symlink the user planted can only lead where
 * the user could go anyway.
 */
async function opsFor(userName: string | undefined): Promise<FileOps> {
  if (userName === undefined) return rootFileOps;
  const user = await resolveUser(userName);
  return user.uid === 0 ? rootFileOps : userFileOps(user);
}

export async function handleFs(conn: Conn, req: FsRequest): Promise<void> {
  const ops = await opsFor(req.user);
  switch (req.op) {
    case "fs.read":
      return ops.read(conn, req);
    case "fs.write":
      if (req.path === "/") throw new AgentError("IS_A_DIRECTORY", "cannot write to /");
      return ops.write(conn, req);
    case "fs.stat":
      conn.sendJson({ type: "stat", stat: await ops.stat(req.path) });
      break;
    case "fs.list":
      conn.sendJson({ type: "list", entries: await ops.list(req.path) });
      break;
    case "fs.exists":
      conn.sendJson({ type: "exists", exists: await ops.exists(req.path) });
      break;
    case "fs.mkdir":
      await ops.mkdir(req.path, req.recursive ?? false, req.mode);
      conn.sendJson({ type: "ok" });
      break;
    case "fs.remove":
      await ops.remove(req.path, req.recursive ?? false);
      conn.sendJson({ type: "ok" });
      break;
  }
  conn.finish();
}

/**
 * The unprivileged system user the host's git runs as (`capsule-git`, made by scripts/setup.sh):
 * the mirrors hold repositories a tenant named, fetched from remotes nobody here controls, so the
 * process that parses them owns nothing but the mirrors' dir and can read nothing of the data dir
 * (0700, root's: the database, keys, VM disks).
 * @module
 */
import { execFileSync } from "node:child_process";

/** The user's name; `scripts/setup.sh` creates it (system user, no login shell, no home). */
export const GIT_USER_NAME = "capsule-git";

export interface GitUser {
  name: string;
  uid: number;
  gid: number;
}

/**
 * The user from the system's user database (`getent passwd`, so NSS users count too), or
 * undefined when it does not exist or is root (uid 0 would drop nothing).
 */
export function lookupGitUser(name: string = GIT_USER_NAME): GitUser | undefined {
  let line: string;
  try {
    line = execFileSync("getent", ["passwd", name], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return undefined;
  }
  const [, , uid, gid] = line.split(":");
  const u = Number(uid);
  const g = Number(gid);
  if (!Number.isInteger(u) || !Number.isInteger(g) || u === 0) return undefined;
  return { name, uid: u, gid: g };
}

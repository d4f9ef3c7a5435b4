/**
 * 0.2's default user of an exec or a PTY (the exec itself, with env and stdin, is
 * `guest/buffered-exec.ts`, shared with `/v1`).
 * @module
 */
import type { VmGuest } from "../../guest/gateway.js";

/** 0.2's default user is "the account holding uid 1000, or root in an image that has no such account". */
const DEFAULT_UID = 1000;
/** The most of the guest's /etc/passwd read to find that account: the file is the guest's to grow. */
const MAX_PASSWD_BYTES = 1024 * 1024;

/** The name of the VM's uid-1000 account, or undefined (root) when it has none. */
export async function defaultUser(guest: VmGuest): Promise<string | undefined> {
  const passwd = (await guest.readFile("/etc/passwd", { length: MAX_PASSWD_BYTES })).toString("utf8");
  for (const line of passwd.split("\n")) {
    const [name, , uid] = line.split(":");
    if (name && uid !== undefined && /^\d+$/.test(uid) && Number(uid) === DEFAULT_UID) return name;
  }
  return undefined;
}

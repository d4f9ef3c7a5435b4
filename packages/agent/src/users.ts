import fs from "node:fs/promises";
import { AgentError } from "./errors.js";

export interface UserInfo {
  name: string;
  uid: number;
  gid: number;
  /** Supplementary groups: the primary group first, then every group listing the user. */
  groups: number[];
  home: string;
  shell: string;
}

const ROOT_FALLBACK: UserInfo = { name: "root", uid: 0, gid: 0, groups: [0], home: "/root", shell: "/bin/sh" };

/** The VM's own files, read on every request: users may be added while the VM runs. */
async function readTable(file: string): Promise<string[][]> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  return text
    .split("\n")
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => line.split(":"));
}

function parseId(field: string | undefined): number | undefined {
  if (field === undefined || !/^\d+$/.test(field)) return undefined;
  return Number(field);
}

function supplementaryGroups(name: string, gid: number, groupTable: string[][]): number[] {
  const groups = new Set([gid]);
  for (const [, , id, members] of groupTable) {
    const groupId = parseId(id);
    if (groupId !== undefined && members?.split(",").includes(name)) groups.add(groupId);
  }
  return [...groups];
}

/**
 * Resolves a user from /etc/passwd and /etc/group directly rather than through NSS: the agent
 * carries the host's libc, which must not load the guest's NSS modules. No name means root.
 */
export async function resolveUser(name: string | undefined): Promise<UserInfo> {
  const wanted = name ?? "root";
  const [passwd, group] = await Promise.all([readTable("/etc/passwd"), readTable("/etc/group")]);
  for (const [user, , uidField, gidField, , home, shell] of passwd) {
    const uid = parseId(uidField);
    const gid = parseId(gidField);
    if (user !== wanted || uid === undefined || gid === undefined) continue;
    return { name: wanted, uid, gid, groups: supplementaryGroups(wanted, gid, group), home: home || "/", shell: shell || "/bin/sh" };
  }
  if (name === undefined) return ROOT_FALLBACK;
  throw new AgentError("USER_NOT_FOUND", `no user ${JSON.stringify(name)} in the VM's /etc/passwd`);
}

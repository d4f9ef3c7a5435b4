import type { BigIntStats } from "node:fs";
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

/**
 * A parsed table is reused while the file's identity and change time stay the same. A write in
 * the same timestamp tick as the read that was cached could leave both unchanged, so a table is
 * cached only once its file has been left alone for this long (git's "racily clean" rule): any
 * later change then carries a later ctime, which no guest can set back.
 */
const SETTLED_MS = 2_000;

const tables = new Map<string, { key: string; rows: string[][] }>();

/**
 * A colon-separated table of the VM's own (/etc/passwd, /etc/group), its comment lines left out.
 * Checked on every request: users may be added while the VM runs. Exported for its tests.
 */
export async function readTable(file: string): Promise<string[][]> {
  let st: BigIntStats;
  try {
    st = await fs.stat(file, { bigint: true });
  } catch (err) {
    tables.delete(file);
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  // Stat before read: a change between the two leaves this key behind, so it is read again.
  const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  const cached = tables.get(file);
  if (cached?.key === key) return cached.rows;
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (err) {
    tables.delete(file);
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const rows = text
    .split("\n")
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => line.split(":"));
  if (BigInt(Date.now()) * 1_000_000n - st.ctimeNs > BigInt(SETTLED_MS) * 1_000_000n) tables.set(file, { key, rows });
  else tables.delete(file);
  return rows;
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

/** A group's gid from the VM's /etc/group (a service's `group`). */
export async function resolveGroupId(name: string): Promise<number> {
  for (const [group, , id] of await readTable("/etc/group")) {
    const gid = parseId(id);
    if (group === name && gid !== undefined) return gid;
  }
  throw new AgentError("USER_NOT_FOUND", `no group ${JSON.stringify(name)} in the VM's /etc/group`);
}

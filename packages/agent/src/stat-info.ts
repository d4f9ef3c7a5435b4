import type { Dirent, Stats } from "node:fs";
import type { DirEntry, FileKind, StatInfo } from "@capsule/agent-protocol";
import { AgentError } from "./errors.js";

function kindOf(entry: Stats | Dirent): FileKind {
  if (entry.isFile()) return "file";
  if (entry.isDirectory()) return "directory";
  if (entry.isSymbolicLink()) return "symlink";
  return "other";
}

export function statInfo(st: Stats): StatInfo {
  return { kind: kindOf(st), size: st.size, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtimeMs: st.mtimeMs };
}

export function dirEntry(entry: Dirent): DirEntry {
  return { name: entry.name, kind: kindOf(entry) };
}

/** Plain code-unit order: stable and locale-free. */
export function sortEntries(entries: DirEntry[]): DirEntry[] {
  return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

const HELPER_KINDS: Record<string, FileKind> = { f: "file", d: "directory", l: "symlink", o: "other" };

/** Parses capsule-spawn's "KIND MODE SIZE UID GID MTIME_SEC MTIME_NSEC" line. */
export function parseStatLine(line: string): StatInfo {
  const [k, mode, size, uid, gid, sec, nsec] = line.trim().split(" ");
  const kind = HELPER_KINDS[k ?? ""];
  if (!kind || nsec === undefined) throw new AgentError("INTERNAL", `capsule-spawn printed a bad stat line: ${JSON.stringify(line)}`);
  return { kind, mode: parseInt(mode ?? "", 8), size: Number(size), uid: Number(uid), gid: Number(gid), mtimeMs: Number(sec) * 1000 + Number(nsec) / 1e6 };
}

/** Parses capsule-spawn's list output: KIND NAME NUL, per entry. */
export function parseListing(out: Buffer): DirEntry[] {
  const entries: DirEntry[] = [];
  for (let start = 0; start < out.length; ) {
    const end = out.indexOf(0, start);
    const stop = end < 0 ? out.length : end;
    entries.push({ name: out.toString("utf8", start + 1, stop), kind: HELPER_KINDS[String.fromCharCode(out[start] ?? 0)] ?? "other" });
    start = stop + 1;
  }
  return sortEntries(entries);
}

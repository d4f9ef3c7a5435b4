import fs from "node:fs/promises";

export interface ProcInfo {
  pid: number;
  argv: string[];
}

/** Every process whose command line contains `needle` (read from /proc; no `ps` parsing). */
export async function findProcs(needle: string): Promise<ProcInfo[]> {
  const out: ProcInfo[] = [];
  for (const entry of await fs.readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const raw = await fs.readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (raw.includes(needle)) out.push({ pid: Number(entry), argv: raw.split("\0").filter(Boolean) });
  }
  return out;
}

export async function waitGone(pids: number[], timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  let left = pids;
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    left = left.filter((pid) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    });
  }
  return left;
}

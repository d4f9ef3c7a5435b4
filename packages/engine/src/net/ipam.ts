import fs from "node:fs/promises";
import path from "node:path";
import { EngineError, ErrorCode } from "../errors.js";

/**
 * Host-wide /30 allocation. Several engines (a server and a test run, say) may share a host, so
 * a claim is an atomic `mkdir` under /run/capsule/ipam/<slot>, holding the owner's data dir and VM
 * id. /run is cleared on reboot together with every network namespace, so claims never outlive
 * the interfaces they describe.
 */
export const IPAM_DIR = "/run/capsule/ipam";

export interface Lease {
  slot: number;
  hostIp: string;
  guestIp: string;
  prefix: 30;
}

function ipToInt(ip: string): number {
  return ip.split(".").reduce((acc, part) => acc * 256 + Number(part), 0);
}
function intToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");
}

export function parseSubnet(cidr: string): { base: number; slots: number } {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(cidr);
  if (!m || Number(m[2]) > 28) throw new EngineError(ErrorCode.InvalidArgument, `subnet ${cidr} must be an IPv4 CIDR of /28 or larger`);
  const bits = Number(m[2]);
  const size = 2 ** (32 - bits);
  const base = ipToInt(m[1] ?? "");
  return { base: base - (base % size), slots: size / 4 };
}

export function leaseFor(cidr: string, slot: number): Lease {
  const { base } = parseSubnet(cidr);
  return { slot, hostIp: intToIp(base + slot * 4 + 1), guestIp: intToIp(base + slot * 4 + 2), prefix: 30 };
}

export async function claim(cidr: string, owner: { dataDir: string; vmId: string }): Promise<Lease> {
  const { slots } = parseSubnet(cidr);
  await fs.mkdir(IPAM_DIR, { recursive: true });
  // Start at a random slot so concurrent engines rarely race for the same one.
  const start = Math.floor(Math.random() * slots);
  for (let i = 0; i < slots; i++) {
    const slot = (start + i) % slots;
    const dir = path.join(IPAM_DIR, String(slot));
    try {
      await fs.mkdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") continue;
      throw err;
    }
    await fs.writeFile(path.join(dir, "owner"), JSON.stringify(owner));
    return leaseFor(cidr, slot);
  }
  throw new EngineError(ErrorCode.NetworkExhausted, `no free /30 left in ${cidr}; delete VMs or configure a larger subnet`);
}

export async function release(slot: number, vmId: string): Promise<void> {
  const dir = path.join(IPAM_DIR, String(slot));
  const owner = await readOwner(dir);
  if (owner && owner.vmId !== vmId) return; // someone else's now: never free a claim we do not hold
  await fs.rm(dir, { recursive: true, force: true });
}

async function readOwner(dir: string): Promise<{ dataDir: string; vmId: string } | undefined> {
  try {
    return JSON.parse(await fs.readFile(path.join(dir, "owner"), "utf8")) as { dataDir: string; vmId: string };
  } catch {
    return undefined;
  }
}

/** Claims held for this data dir, for recovery. */
export async function claimsOf(dataDir: string): Promise<Array<{ slot: number; vmId: string }>> {
  let entries: string[];
  try {
    entries = await fs.readdir(IPAM_DIR);
  } catch {
    return [];
  }
  const out: Array<{ slot: number; vmId: string }> = [];
  for (const e of entries) {
    const owner = await readOwner(path.join(IPAM_DIR, e));
    if (owner?.dataDir === dataDir) out.push({ slot: Number(e), vmId: owner.vmId });
  }
  return out;
}

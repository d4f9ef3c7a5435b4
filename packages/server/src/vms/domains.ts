/**
 * Freestyle `domains`: host names an account claims for a VM port (`POST /v1/vms` with
 * `domains: [{domain, vmPort}]`). Requests for a claimed name, arriving on Capsule's own port,
 * are proxied to that port of the VM, publicly (as Freestyle's are). A name belongs to one
 * account; the rows go with their VM (ON DELETE CASCADE). The only code touching the domains
 * table.
 * @module
 */
import type { Db } from "../db.js";
import { ApiError } from "../errors.js";
import type { Account } from "../keys.js";
import { isHostname, isWithin, type HostNames } from "../preview/host.js";

/** The port a mapping without `vmPort` goes to (Freestyle's documented default). */
export const DEFAULT_DOMAIN_VM_PORT = 443;

export interface DomainMapping {
  domain: string;
  vmPort: number;
}

/** What an account may claim: the server's host names (preview/host.ts). */
export type DomainPolicy = HostNames;

/** Names one account may hold at once (over all its VMs); a create past it is refused. */
export const MAX_DOMAINS_PER_ACCOUNT = 256;

/** Loopback names are the host's own, whatever the config says. */
const ALWAYS_RESERVED = ["localhost"];
/** An IPv4 literal: not a domain. */
const IPV4_RE = /^[0-9]+(\.[0-9]+){3}$/;

/** Checks and normalises a create's `domains` (lower case, no trailing dot, one entry per name). */
export function checkDomains(entries: ReadonlyArray<{ domain: string; vmPort?: number | null | undefined }>, policy: DomainPolicy): DomainMapping[] {
  const out = new Map<string, DomainMapping>();
  // Off unless the operator named where tenants may claim: any name could be the API's own.
  if (entries.length > 0 && policy.domainSuffixes.length === 0) {
    throw new ApiError("CREATE_VM_BAD_REQUEST", "domains are off on this server: its operator has not set the suffixes tenants may claim names under (CAPSULE_DOMAIN_SUFFIXES)");
  }
  for (const e of entries) {
    const domain = e.domain.trim().toLowerCase().replace(/\.$/, "");
    if (!isHostname(domain) || IPV4_RE.test(domain)) throw new ApiError("CREATE_VM_BAD_REQUEST", `domains: ${JSON.stringify(e.domain)} is not a DNS host name`);
    const reserved = [...ALWAYS_RESERVED, policy.previewDomain].some((r) => isWithin(domain, r)) || policy.apiHostnames.includes(domain);
    if (reserved) throw new ApiError("CREATE_VM_BAD_REQUEST", `domains: ${domain} is reserved by this server (its API host, the preview domain ${policy.previewDomain} and their subdomains)`);
    if (!policy.domainSuffixes.some((s) => isWithin(domain, s))) {
      throw new ApiError("CREATE_VM_BAD_REQUEST", `domains: ${domain} is not under a domain this server lets tenants claim (${policy.domainSuffixes.join(", ")})`);
    }
    if (out.has(domain)) throw new ApiError("CREATE_VM_BAD_REQUEST", `domains: ${domain} is listed twice`);
    out.set(domain, { domain, vmPort: e.vmPort ?? DEFAULT_DOMAIN_VM_PORT });
  }
  return [...out.values()];
}

function taken(domain: string): ApiError {
  return new ApiError("DOMAIN_ALREADY_EXISTS", `Domain already exists: ${domain} belongs to another account`);
}

export class DomainRows {
  constructor(private readonly db: Db) {}

  /**
   * Refuses (DOMAIN_ALREADY_EXISTS) when another account holds any of the names, and
   * (CREATE_VM_BAD_REQUEST, reason ACCOUNT_DOMAINS) when the new ones would take the account past
   * {@link MAX_DOMAINS_PER_ACCOUNT}; nothing is written.
   */
  checkFree(account: Account, mappings: readonly DomainMapping[]): void {
    const owner = this.db.prepare("SELECT account_id FROM domains WHERE domain = ?");
    let added = 0;
    for (const m of mappings) {
      const row = owner.get(m.domain) as { account_id: string } | undefined;
      if (row && row.account_id !== account.id) throw taken(m.domain);
      if (!row) added++;
    }
    if (added === 0) return;
    const held = (this.db.prepare("SELECT COUNT(*) AS n FROM domains WHERE account_id = ?").get(account.id) as { n: number }).n;
    if (held + added > MAX_DOMAINS_PER_ACCOUNT) {
      throw new ApiError("CREATE_VM_BAD_REQUEST", `domains: the account holds ${held} names and may hold at most ${MAX_DOMAINS_PER_ACCOUNT}; delete VMs whose names you no longer need`, undefined, { reason: "ACCOUNT_DOMAINS" });
    }
  }

  /**
   * Maps the names to the VM in one transaction; a name the account already mapped to another of
   * its VMs moves to this one. Another account's name (claimed since `checkFree`) fails it all.
   */
  claim(account: Account, vmId: string, mappings: readonly DomainMapping[]): void {
    const upsert = this.db.prepare(
      `INSERT INTO domains (domain, account_id, vm_id, vm_port, created_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (domain) DO UPDATE SET vm_id = excluded.vm_id, vm_port = excluded.vm_port WHERE domains.account_id = excluded.account_id`,
    );
    this.db.transaction(() => {
      for (const m of mappings) {
        if (upsert.run(m.domain, account.id, vmId, m.vmPort, new Date().toISOString()).changes === 0) throw taken(m.domain);
      }
    })();
  }

  /** Where a request for `hostname` goes, with the owning account; undefined for a name nobody claimed. */
  route(hostname: string): { owner: Account; vmId: string; port: number } | undefined {
    const row = this.db
      .prepare("SELECT d.vm_id AS vmId, d.vm_port AS port, a.id AS accountId, a.name AS accountName FROM domains d JOIN accounts a ON a.id = d.account_id WHERE d.domain = ?")
      .get(hostname) as { vmId: string; port: number; accountId: string; accountName: string } | undefined;
    return row ? { owner: { id: row.accountId, name: row.accountName }, vmId: row.vmId, port: row.port } : undefined;
  }

  /** The names mapped to a VM. */
  ofVm(vmId: string): string[] {
    return (this.db.prepare("SELECT domain FROM domains WHERE vm_id = ? ORDER BY domain").all(vmId) as Array<{ domain: string }>).map((r) => r.domain);
  }
}

/**
 * What every guest-side WebSocket does before its handshake completes: the VM checked, woken and
 * held, and the terminal size read from the query. Shared by the /v1 and /v5 sockets.
 * @module
 */
import type { Deps } from "../context.js";
import { ApiError } from "../errors.js";
import type { VmGuest } from "../guest/gateway.js";
import type { Account } from "../keys.js";

/** Ownership checked, the VM awake and held (and `check` passed); nothing started in it yet. */
export function holdVm(deps: Deps, account: Account, vmId: string, check?: (guest: VmGuest) => Promise<void>): Promise<{ guest: VmGuest; release: () => void }> {
  return deps.svc.gateway
    .open(account, vmId, {}, async (_vm, guest) => {
      await check?.(guest);
      return guest;
    })
    .then((h) => ({ guest: h.value, release: h.release }));
}

export function size(url: URL, name: "cols" | "rows", dflt: number): number {
  const raw = url.searchParams.get(name);
  if (raw === null || raw === "") return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new ApiError("VALIDATION_ERROR", `${name} must be an integer from 1 to 10000, got ${JSON.stringify(raw)}`);
  return n;
}

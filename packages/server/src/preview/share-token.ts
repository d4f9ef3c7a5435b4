/**
 * Share links for a preview port: `<id>.<expiresAtMs>.<mac>`, the mac an HMAC-SHA256 over the
 * share's id, VM, port and expiry with a server secret kept in the data dir. The signature makes
 * a forged or altered token worthless without a database read; the share's row (preview-rows.ts)
 * makes it revocable. The same token is the preview host's auth cookie once a browser used it.
 * @module
 */
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";

/** The secret's file in the data dir (root-only, like server.db). */
export const SHARE_SECRET_FILE = "preview-secret";
const SECRET_BYTES = 32;
const TOKEN_RE = /^([a-z0-9]{16})\.([0-9]{1,15})\.([A-Za-z0-9_-]{43})$/;

export interface ShareClaim {
  id: string;
  vmId: string;
  port: number;
  expiresAt: number;
}

export class ShareSigner {
  constructor(private readonly secret: Buffer) {
    if (secret.length < SECRET_BYTES) throw new Error(`a share secret must have at least ${SECRET_BYTES} bytes`);
  }

  /** The data dir's secret, made (0600) on first use. */
  static forDataDir(dataDir: string): ShareSigner {
    const file = path.join(dataDir, SHARE_SECRET_FILE);
    try {
      fs.writeFileSync(file, crypto.randomBytes(SECRET_BYTES), { mode: 0o600, flag: "wx" });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    return new ShareSigner(fs.readFileSync(file));
  }

  #mac(c: ShareClaim): string {
    return crypto.createHmac("sha256", this.secret).update(`capsule-share\n${c.id}\n${c.vmId}\n${c.port}\n${c.expiresAt}`).digest("base64url");
  }

  sign(c: ShareClaim): string {
    return `${c.id}.${c.expiresAt}.${this.#mac(c)}`;
  }

  /** The share id of a token for this VM port that is genuine and not expired at `now`; else undefined. */
  verify(token: string | undefined, vmId: string, port: number, now: number): { id: string; expiresAt: number } | undefined {
    const m = TOKEN_RE.exec(token ?? "");
    if (!m) return undefined;
    const claim = { id: m[1] as string, vmId, port, expiresAt: Number(m[2]) };
    const given = Buffer.from(m[3] as string);
    const expected = Buffer.from(this.#mac(claim));
    if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return undefined;
    return claim.expiresAt > now ? { id: claim.id, expiresAt: claim.expiresAt } : undefined;
  }
}

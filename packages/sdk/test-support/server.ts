/**
 * Test fixtures for the SDK: the server package's harness (a real API server on port 0 with a
 * scratch data dir, real gVisor VMs, everything removed in `after`), plus helpers.
 */
import { createHash } from "node:crypto";
export { useServer } from "@capsule/server/test-support";

export function sha256(b: Buffer | Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

const ESC = String.fromCharCode(0x1b);
const BEL = String.fromCharCode(0x07);
const ANSI = new RegExp(`${ESC}\\[[0-9;?]*[a-zA-Z]|${ESC}\\][^${BEL}]*${BEL}|${ESC}[=>]`, "g");

/** Collects terminal output; `waitFor` polls the text without escape sequences. */
export function screen() {
  let text = "";
  return {
    onData: (d: Uint8Array) => {
      text += Buffer.from(d).toString("utf8");
    },
    get text() {
      return text.replace(ANSI, "");
    },
    async waitFor(re: RegExp, timeoutMs = 15_000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      while (!re.test(this.text)) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}; screen:\n${JSON.stringify(this.text.slice(-1500))}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}

export async function until(cond: () => boolean, timeoutMs = 10_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

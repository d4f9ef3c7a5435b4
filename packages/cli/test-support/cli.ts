/** Runs the real `capsule` binary against a test server. */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
export { useServer } from "@capsule/server/test-support";

/** dist/src/main.js, from dist/test-support/. */
export const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../src/main.js");

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

/** `capsule ...args` with CAPSULE_API_URL/KEY set (unless env overrides); resolves when it exits. */
export function capsule(args: string[], opts: { url?: string; key?: string; env?: Record<string, string | undefined>; input?: Buffer | string } = {}): Promise<RunResult> {
  const env: Record<string, string | undefined> = { ...process.env, CAPSULE_API_URL: opts.url, CAPSULE_API_KEY: opts.key, FREESTYLE_API_URL: undefined, FREESTYLE_API_KEY: undefined, ...opts.env };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  const child = spawn(process.execPath, [CLI, ...args], { env: env as NodeJS.ProcessEnv, stdio: ["pipe", "pipe", "pipe"] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on("data", (d: Buffer) => out.push(d));
  child.stderr.on("data", (d: Buffer) => err.push(d));
  child.stdin.on("error", () => undefined);
  child.stdin.end(opts.input ?? "");
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => {
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, stdout: stdoutBytes.toString("utf8"), stderr: Buffer.concat(err).toString("utf8"), stdoutBytes });
    });
  });
}

export function sha256(b: Buffer): string {
  return createHash("sha256").update(b).digest("hex");
}

/**
 * A Claude Code snapshot built without internet: the native CLI from the npm package
 * `@anthropic-ai/claude-code-linux-x64` (fetched once with `npm pack` into a host cache, then
 * reused), streamed into a builder VM at `/usr/local/bin/claude` and `/root/.local/bin/claude`,
 * a non-root user owning its home and a work directory, and pre-seeded `~/.claude.json` and
 * `~/.claude/settings.json` so the interactive UI starts straight in the chat. Snapshots are
 * named `claude-code-<version>[-<variant>]` and reused: a second call returns at once.
 * @module
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { shq } from "@capsule/contract/shell";
import type { Capsule } from "../client.js";
import type { Vm } from "../vm.js";

/** The Claude Code version Capsule pins by default (env CAPSULE_CLAUDE_CODE_VERSION overrides). */
export const DEFAULT_CLAUDE_CODE_VERSION = "2.1.332";
/** The npm package holding the native Linux x64 binary. */
export const CLAUDE_CODE_PACKAGE = "@anthropic-ai/claude-code-linux-x64";

export interface ClaudeSnapshotOptions {
  /** Claude Code version. Default: env CAPSULE_CLAUDE_CODE_VERSION, then {@link DEFAULT_CLAUDE_CODE_VERSION}. */
  version?: string;
  /** Non-root user to create. Default `claude`. */
  user?: string;
  /** Work directory owned by the user and trusted in `~/.claude.json`. Default `/srv/app`. */
  workDir?: string;
  /** When given, its last 20 characters are pre-approved in `~/.claude.json` (the key itself is not stored). */
  apiKey?: string;
  /** Host cache of fetched binaries. Default: env CAPSULE_CLAUDE_CODE_CACHE, then /var/lib/capsule/cache/claude-code as root, else ~/.cache/capsule/claude-code. */
  cacheDir?: string;
  /** Build a new snapshot even when one with the same name exists. */
  force?: boolean;
  /** Progress lines ("fetching", "uploading", ...). */
  onProgress?: (message: string) => void;
}

export interface ClaudeSnapshot {
  snapshotId: string;
  name: string;
  version: string;
  user: string;
  workDir: string;
  /** True when an existing snapshot was reused. */
  cached: boolean;
}

export function claudeCodeCacheDir(): string {
  if (process.env.CAPSULE_CLAUDE_CODE_CACHE) return process.env.CAPSULE_CLAUDE_CODE_CACHE;
  return process.getuid?.() === 0 ? "/var/lib/capsule/cache/claude-code" : path.join(os.homedir(), ".cache/capsule/claude-code");
}

/**
 * The path of the cached native binary for `version`, fetching it with `npm pack` (from the
 * configured npm registry; no other network) when it is not cached yet.
 */
export async function ensureClaudeCodeBinary(version = defaultVersion(), cacheDir = claudeCodeCacheDir()): Promise<string> {
  if (!/^[0-9A-Za-z.+-]+$/.test(version)) throw new Error(`invalid Claude Code version ${JSON.stringify(version)}`);
  const dir = path.join(cacheDir, version);
  const bin = path.join(dir, "claude");
  if (fs.existsSync(bin)) return bin;
  const run = promisify((await import("node:child_process")).execFile); // loaded here: importing the SDK should not load child_process
  fs.mkdirSync(dir, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(dir, ".fetch-"));
  try {
    const tgz = `anthropic-ai-claude-code-linux-x64-${version}.tgz`;
    if (!fs.existsSync(path.join(dir, tgz))) {
      await run("npm", ["pack", `${CLAUDE_CODE_PACKAGE}@${version}`, "--silent", "--pack-destination", tmp], { cwd: tmp, maxBuffer: 1 << 20 });
      fs.renameSync(path.join(tmp, tgz), path.join(dir, tgz));
    }
    await run("tar", ["-xzf", path.join(dir, tgz), "-C", tmp, "package/claude"]);
    fs.chmodSync(path.join(tmp, "package/claude"), 0o755);
    fs.renameSync(path.join(tmp, "package/claude"), bin); // atomic: a half-extracted binary is never "cached"
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return bin;
}

function defaultVersion(): string {
  return process.env.CAPSULE_CLAUDE_CODE_VERSION || DEFAULT_CLAUDE_CODE_VERSION;
}

/** `~/.claude.json` that skips onboarding, approves the key (by its last 20 chars) and trusts `dirs`. */
export function claudeJson(dirs: string[], apiKey?: string): Record<string, unknown> {
  return {
    theme: "dark",
    hasCompletedOnboarding: true,
    ...(apiKey ? { customApiKeyResponses: { approved: [apiKey.slice(-20)], rejected: [] } } : {}),
    projects: Object.fromEntries(dirs.map((d) => [d, { hasTrustDialogAccepted: true }])),
  };
}

export function claudeSnapshotName(opts: { version: string; user: string; workDir: string; apiKey?: string | undefined }): string {
  const base = `claude-code-${opts.version}`;
  if (opts.user === "claude" && opts.workDir === "/srv/app" && !opts.apiKey) return base;
  const h = createHash("sha256").update(JSON.stringify([opts.user, opts.workDir, opts.apiKey?.slice(-20) ?? ""])).digest("hex").slice(0, 10);
  return `${base}-${h}`;
}

async function findSnapshot(client: Capsule, name: string): Promise<string | undefined> {
  const { snapshots } = await client.snapshots.list();
  return snapshots.find((s) => s.name === name && !s.deleted)?.snapshotId;
}

/** Builds (or reuses) the Claude Code snapshot. */
export async function buildClaudeSnapshot(client: Capsule, opts: ClaudeSnapshotOptions = {}): Promise<ClaudeSnapshot> {
  const version = opts.version ?? defaultVersion();
  const user = opts.user ?? "claude";
  const workDir = opts.workDir ?? "/srv/app";
  if (!/^[a-z_][a-z0-9_-]*$/.test(user) || user === "root") throw new Error(`invalid non-root user name ${JSON.stringify(user)}`);
  if (!workDir.startsWith("/")) throw new Error("workDir must be absolute");
  const name = claudeSnapshotName({ version, user, workDir, apiKey: opts.apiKey });
  const progress = opts.onProgress ?? (() => undefined);
  const result = (snapshotId: string, cached: boolean): ClaudeSnapshot => ({ snapshotId, name, version, user, workDir, cached });

  if (!opts.force) {
    const existing = await findSnapshot(client, name);
    if (existing) return result(existing, true);
  }
  progress(`fetching ${CLAUDE_CODE_PACKAGE}@${version}`);
  const bin = await ensureClaudeCodeBinary(version, opts.cacheDir ?? claudeCodeCacheDir());

  progress("creating the builder VM");
  const { vm } = await client.vms.create({ idleTimeoutSeconds: null });
  try {
    progress(`uploading the binary (${Math.round(fs.statSync(bin).size / 1e6)} MB)`);
    await vm.fs.writeFile("/usr/local/bin/claude", fs.createReadStream(bin), { mode: 0o755 });
    const home = `/home/${user}`;
    await check(vm, [
      "set -e",
      "chmod 755 /usr/local/bin/claude",
      "mkdir -p /root/.local/bin /root/.claude",
      "cp /usr/local/bin/claude /root/.local/bin/claude",
      `id -u ${user} >/dev/null 2>&1 || useradd -m -s /bin/bash ${user}`,
      `mkdir -p ${shq(home)}/.claude ${shq(workDir)}`,
    ].join("\n"));
    const settings = JSON.stringify({ skipDangerousModePermissionPrompt: true }, null, 2);
    await vm.fs.writeTextFile("/root/.claude.json", JSON.stringify(claudeJson(["/root", workDir], opts.apiKey), null, 2));
    await vm.fs.writeTextFile("/root/.claude/settings.json", settings);
    await vm.fs.writeTextFile(`${home}/.claude.json`, JSON.stringify(claudeJson([home, workDir], opts.apiKey), null, 2));
    await vm.fs.writeTextFile(`${home}/.claude/settings.json`, settings);
    await check(vm, `chown -R ${user}:${user} ${shq(home)} ${shq(workDir)} && /usr/local/bin/claude --version`);
    progress("snapshotting");
    const { snapshotId } = await vm.snapshot({ name });
    return result(snapshotId, false);
  } finally {
    await vm.delete().catch(() => undefined);
  }
}

async function check(vm: Vm, command: string): Promise<string> {
  const r = await vm.exec({ command, timeoutMs: 120_000 });
  if (r.statusCode !== 0) throw new Error(`builder step failed (${r.statusCode}): ${command}\n${r.stderr ?? ""}${r.stdout ?? ""}`);
  return r.stdout ?? "";
}

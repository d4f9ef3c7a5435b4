/**
 * Test fixtures: a real API server on port 0 with a scratch data dir, the installed image and
 * agent bundle, and API keys. Everything a test file makes (VMs, snapshots, the data dir) is
 * removed in `after`, pass or fail. Without sandbox support on the host the tests skip with the
 * reason — except under CI, where that fails.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before } from "node:test";
import { Engine } from "@capsule/engine";
import pino from "pino";
import { dbPath, KeyStore, openDb, startServer, type RunningServer, type StartOptions } from "../src/index.js";

import { AGENT_BUNDLE, IMAGES_DIR, hostGap, sandboxGap } from "@capsule/engine/test-support";

export { AGENT_BUNDLE, IMAGES_DIR, hostGap, sandboxGap };
export { VM_NODE } from "./preview-app.js";
export const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../cli/dist/src/main.js");

/** CAPSULE_POOL for servers tests spawn: the warm pool off. */
export const POOL_OFF = JSON.stringify({ size: 0, hotSize: 0 });

export async function scratchDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), "capsule-api-test-"));
}

export interface TestServer {
  server: RunningServer;
  dataDir: string;
  url: string;
  /** Account "alice"'s key, and "bob"'s. */
  keyA: string;
  keyB: string;
}

/**
 * Registers before/after hooks that start a server for the current test file and tear it all
 * down. `skip()` gives the reason when the host cannot run sandboxes.
 */
export function useServer(
  opts: {
    defaultIdleTimeoutSeconds?: number | null;
    idleCheckMs?: number;
    allowedHostPorts?: () => number[];
    quotas?: StartOptions["quotas"];
    admission?: StartOptions["admission"];
    pool?: StartOptions["pool"];
    /** The server's egress (default none, see testServerOptions). */
    egress?: StartOptions["egress"];
    limits?: StartOptions["limits"];
    /** Where tenants may claim domains (none by default: domains off). */
    domainSuffixes?: string[];
    apiHostnames?: string[];
    previewDomain?: string;
  } = {},
): { get: () => TestServer; skip: () => string | false } {
  let current: TestServer | undefined;
  let gap: string | undefined;
  before(async () => {
    gap = await hostGap();
    if (gap) {
      if (process.env.CI) throw new Error(`CI must run the sandbox tests, but: ${gap}`);
      return;
    }
    const dataDir = await scratchDir();
    const server = await startServer(
      testServerOptions(dataDir, {
        defaultIdleTimeoutSeconds: opts.defaultIdleTimeoutSeconds ?? null,
        idleCheckMs: opts.idleCheckMs ?? 500,
        ...(opts.allowedHostPorts ? { allowedHostPorts: opts.allowedHostPorts() } : {}),
        ...(opts.quotas ? { quotas: opts.quotas } : {}),
        ...(opts.admission ? { admission: opts.admission } : {}),
        ...(opts.pool ? { pool: opts.pool } : {}),
        ...(opts.egress ? { egress: opts.egress } : {}),
        ...(opts.limits ? { limits: opts.limits } : {}),
        ...(opts.domainSuffixes ? { domainSuffixes: opts.domainSuffixes } : {}),
        ...(opts.apiHostnames ? { apiHostnames: opts.apiHostnames } : {}),
        ...(opts.previewDomain ? { previewDomain: opts.previewDomain } : {}),
      }),
    );
    current = { server, dataDir, url: server.url, keyA: server.keys.createKey("alice").key, keyB: server.keys.createKey("bob").key };
  });
  after(async () => {
    if (!current) return;
    const { server, dataDir } = current;
    try {
      await server.svc.pool.close(); // no refill may boot a VM after the clean-up below
      await destroyEngineState(server.engine);
    } finally {
      await server.close();
      await fs.rm(dataDir, { recursive: true, force: true });
    }
  });
  return {
    get: () => {
      if (!current) throw new Error("server not started");
      return current;
    },
    skip: () => gap ?? false,
  };
}

/**
 * Options for a test server on a scratch data dir: port 0 on loopback, the installed image and
 * agent bundle, no egress, no idle timeout, logs at warn (CAPSULE_TEST_LOG to change).
 */
export function testServerOptions(dataDir: string, extra: Partial<StartOptions> = {}): StartOptions {
  return {
    port: 0,
    host: "127.0.0.1",
    dataDir,
    imagesDir: IMAGES_DIR,
    agentBundleDir: AGENT_BUNDLE,
    egress: "none",
    defaultIdleTimeoutSeconds: null,
    // The warm pool is off unless a test turns it on: VMs a test did not make would run beside it.
    pool: { size: 0, hotSize: 0 },
    logger: pino({ level: process.env.CAPSULE_TEST_LOG ?? "warn" }),
    ...extra,
  };
}

/** Deletes every VM (waiting for the teardown) and snapshot the engine has. */
export async function destroyEngineState(engine: Engine): Promise<void> {
  for (const vm of await engine.listVms()) await engine.deleteVm(vm.id, { wait: true }).catch(() => undefined);
  for (const s of await engine.listSnapshots()) await engine.deleteSnapshot(s.id).catch(() => undefined);
}

/** Opens the engine on a data dir nobody serves any more and removes everything in it. */
export async function destroyDataDir(dataDir: string): Promise<void> {
  if (await fs.access(path.join(dataDir, "vms")).then(() => true, () => false)) {
    const engine = await Engine.open({ dataDir, imagesDir: IMAGES_DIR, agentBundleDir: AGENT_BUNDLE });
    try {
      await destroyEngineState(engine);
    } finally {
      await engine.close();
    }
  }
  await fs.rm(dataDir, { recursive: true, force: true });
}

/** A key made directly in a data dir's database (what `capsule keys create` does). */
export function createKey(dataDir: string, account: string): string {
  const db = openDb(dbPath(dataDir));
  try {
    return new KeyStore(db).createKey(account).key;
  } finally {
    db.close();
  }
}

/** `capsule serve` as a child process; resolves once it prints its address. */
export async function spawnServer(dataDir: string, opts: { allowedHostPorts?: number[] } = {}): Promise<{ child: ChildProcess; url: string }> {
  const hostPorts = (opts.allowedHostPorts ?? []).flatMap((p) => ["--allow-host-port", String(p)]);
  const child = spawn(
    process.execPath,
    [CLI, "serve", "--port", "0", "--host", "127.0.0.1", "--data-dir", dataDir, "--images-dir", IMAGES_DIR, "--agent-dir", AGENT_BUNDLE, "--egress", "none", "--idle-timeout", "none", ...hostPorts],
    { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, CAPSULE_LOG_LEVEL: "warn", CAPSULE_POOL: process.env.CAPSULE_POOL ?? POOL_OFF } },
  );
  const url = await new Promise<string>((resolve, reject) => {
    let buf = "";
    child.stdout?.on("data", (d: Buffer) => {
      buf += d.toString("utf8");
      const m = /\{"listening":"([^"]+)"/.exec(buf);
      if (m?.[1]) resolve(m[1]);
    });
    child.once("exit", (code) => reject(new Error(`capsule serve exited ${code} before listening: ${buf}`)));
  });
  return { child, url };
}

/** Raw HTTP with a key; answers status and parsed JSON (or text). */
export async function call(url: string, key: string | undefined, method: string, p: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> & { code?: string; message?: string } }> {
  const res = await fetch(url + p, {
    method,
    headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(body !== undefined ? { "content-type": "application/json" } : {}), ...headers },
    ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    parsed = { text };
  }
  return { status: res.status, body: parsed };
}

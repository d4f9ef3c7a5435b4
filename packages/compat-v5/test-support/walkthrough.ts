/**
 * The seed's walk-through through the official `freestyle@0.2.17` client, as a script run by
 * whichever Node is under test (v5-node22.test.ts runs it on Node 22 against a `capsule serve`
 * child): create with a firewall, exec as root and as a linuxUser, a 1 KB and a 20 MB file round
 * trip (the latter through the chunked upload), snapshot and boot from it, a PTY, delete.
 *
 * Usage: node walkthrough.js URL, with the API key in FREESTYLE_API_KEY. It records what it saw
 * and prints one JSON line, a {@link Walkthrough}; the test asserts on it. A step that throws
 * prints `{failed: {step, error}}` and exits 1.
 */
import { randomBytes } from "node:crypto";
import { client, NOTHING, sha256, terminal } from "./v5.js";

/** Above the client's 8 MiB threshold for the chunked, resumable upload. */
const BIG_BYTES = 20 * 1024 * 1024;
const SMALL_BYTES = 1024;

export interface FileRoundTrip {
  bytes: number;
  sent: string;
  read: string;
  /** `sha256sum` inside the VM. */
  guest: string;
}

export interface Walkthrough {
  node: string;
  /** Milliseconds per step, in order. */
  stepMs: Record<string, number>;
  created: { state: string; firewallRules: unknown[]; listedRules: unknown[] };
  exec: { root: string; rootExplicit: string; linuxUser: string; linuxUserOption: string };
  small: FileRoundTrip;
  big: FileRoundTrip;
  /** Requests to /fs/uploads by method (POST create and commit, PUT a chunk). */
  uploadRequests: Record<string, number>;
  snapshot: { contents: string; bootedFrom: string | null; bootedBig: string; bootedUser: string };
  pty: { output: string; closedSession: number; sessionId: number; stateAfterClose: string | undefined };
  deleted: { vmStatus: number | undefined; bootedStatus: number | undefined };
}

const PTY_MARK = /pty-user=(\w+) pty-42/;

async function main(url: string, apiKey: string): Promise<Walkthrough> {
  const uploadRequests: Record<string, number> = {};
  // Counts the chunked upload's requests, so the result shows the 20 MB write went through it.
  const counting: typeof fetch = (input, init) => {
    const target = input instanceof Request ? input.url : String(input);
    if (new URL(target).pathname.includes("/fs/uploads")) {
      const method = init?.method ?? (input instanceof Request ? input.method : "GET");
      uploadRequests[method] = (uploadRequests[method] ?? 0) + 1;
    }
    return fetch(input, init);
  };
  const fs = client(url, apiKey, counting);
  const stepMs: Record<string, number> = {};
  const step = async <T>(name: string, run: () => Promise<T>): Promise<T> => {
    const start = performance.now();
    try {
      return await run();
    } catch (e) {
      throw Object.assign(new Error(e instanceof Error ? e.message : String(e)), { step: name });
    } finally {
      stepMs[name] = Math.round(performance.now() - start);
    }
  };

  const { vm, vmId, data, firewallRules } = await step("create", () => fs.vms.create({ firewall: NOTHING }));
  const created = await step("firewall rules", async () => ({ state: data.state, firewallRules, listedRules: (await vm.firewallRules()).rules }));

  const exec = await step("exec", async () => {
    const root = (await vm.exec("id -un")).stdout ?? "";
    const made = await vm.exec("useradd -m -u 1000 -s /bin/bash claude");
    if (made.statusCode !== 0) throw new Error(`useradd: ${made.stderr}`);
    return {
      root,
      rootExplicit: (await vm.linuxUser("root").exec("id -u")).stdout ?? "",
      linuxUser: (await vm.linuxUser("claude").exec("id -un; pwd")).stdout ?? "",
      linuxUserOption: (await vm.exec({ command: "id -un", linuxUser: "claude" })).stdout ?? "",
    };
  });

  const roundTrip = async (file: string, bytes: Buffer): Promise<FileRoundTrip> => {
    await vm.fs.writeFile(file, bytes);
    const read = sha256(await vm.fs.readFile(file));
    const guest = ((await vm.linuxUser("root").exec(`sha256sum ${file}`)).stdout ?? "").split(" ")[0] ?? "";
    return { bytes: bytes.length, sent: sha256(bytes), read, guest };
  };
  const small = await step("small file", () => roundTrip("/root/small.bin", randomBytes(SMALL_BYTES)));
  const big = await step("big file", () => roundTrip("/root/big.bin", randomBytes(BIG_BYTES)));

  const { snapshotId, snapshot } = await step("snapshot", () => vm.snapshot({ displayName: "node22" }));
  const booted = await step("boot from snapshot", () => fs.vms.create({ snapshotId, firewall: NOTHING }));
  const fromSnapshot = await step("read the booted VM", async () => ({
    // Capsule's snapshots are disk-only; the contract's field says so.
    contents: (snapshot as unknown as { contents: string }).contents,
    bootedFrom: booted.data.snapshotId ?? null,
    bootedBig: sha256(await booted.vm.fs.readFile("/root/big.bin")),
    bootedUser: (await booted.vm.exec("id -un")).stdout ?? "",
  }));

  const pty = await step("pty", async () => {
    const out = terminal();
    const s = await vm.pty.open({ cols: 100, rows: 30, onData: out.onData });
    s.write("echo pty-user=$(id -un) pty-$((6*7))\n");
    await out.waitFor(PTY_MARK);
    const closed = await vm.pty.close(s.sessionId);
    const after = (await vm.pty.list()).sessions.find((x) => x.sessionId === s.sessionId);
    return { output: PTY_MARK.exec(out.text())?.[0] ?? "", closedSession: closed.sessionId, sessionId: s.sessionId, stateAfterClose: after?.state };
  });

  const status = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => (e as { status?: number }).status);
  const deleted = await step("delete", async () => {
    await vm.delete();
    await booted.vm.delete();
    await fs.vms.snapshots.delete(snapshotId);
    return { vmStatus: await status(fs.vms.get(vmId)), bootedStatus: await status(fs.vms.get(booted.vmId)) };
  });

  return { node: process.version, stepMs, created, exec, small, big, uploadRequests, snapshot: fromSnapshot, pty, deleted };
}

const [url] = process.argv.slice(2);
const apiKey = process.env.FREESTYLE_API_KEY;
if (!url || !apiKey) {
  console.error("usage: FREESTYLE_API_KEY=KEY node walkthrough.js URL");
  process.exit(2);
}
main(url, apiKey).then(
  (result) => console.log(JSON.stringify(result)),
  (e: unknown) => {
    console.log(JSON.stringify({ failed: { step: (e as { step?: string }).step ?? "set-up", error: e instanceof Error ? e.message : String(e) } }));
    process.exit(1);
  },
);

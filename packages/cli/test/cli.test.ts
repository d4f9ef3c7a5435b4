/** The real `capsule` binary against a real server: exit codes, --json, cp both ways, snapshots. One VM. */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { capsule, sha256, useServer } from "../test-support/cli.js";

describe("capsule CLI", () => {
  const t = useServer();
  let vmId = "";
  const tmp = fs.mkdtemp(path.join(os.tmpdir(), "capsule-cli-test-"));
  after(async () => fs.rm(await tmp, { recursive: true, force: true }));
  const run = (args: string[], input?: Buffer | string) => capsule(args, { url: t.get().url, key: t.get().keyA, ...(input !== undefined ? { input } : {}) });

  it("help, usage and configuration errors have their exit codes", async () => {
    const help = await capsule(["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Exit codes:/);
    assert.match((await capsule(["vm", "exec", "--help"])).stdout, /Examples:/);
    assert.equal((await capsule(["vm", "list", "--no-such-flag"])).code, 2);
    const noKey = await capsule(["vm", "list"], { env: { CAPSULE_API_URL: "http://127.0.0.1:9" } });
    assert.equal(noKey.code, 4);
    assert.match(noKey.stderr, /CONFIG_MISSING: .*CAPSULE_API_KEY/);
    const down = await capsule(["vm", "list"], { url: "http://127.0.0.1:9", key: "k" });
    assert.equal(down.code, 5);
    assert.match(down.stderr, /NETWORK_ERROR/);
  });

  it("vm create / list / get with --json; errors carry the server's code", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const created = await run(["vm", "create", "--user", "claude", "--idle-timeout", "none"]);
    assert.equal(created.code, 0, created.stderr);
    vmId = created.stdout.trim();
    assert.match(vmId, /^\S+$/);
    const list = JSON.parse((await run(["vm", "list", "--json"])).stdout) as { vms: Array<{ id: string; idleTimeoutSeconds: number | null }> };
    assert.equal(list.vms.find((v) => v.id === vmId)?.idleTimeoutSeconds, null);
    const table = await run(["vm", "list"]);
    assert.match(table.stdout, /^ID\s+NAME\s+STATE/);
    assert.match(table.stdout, new RegExp(`${vmId}.*running`));
    const info = JSON.parse((await run(["vm", "get", vmId, "--json"])).stdout) as { id: string; state: string };
    assert.equal(info.state, "running");
    const missing = await run(["vm", "get", "no-such-vm"]);
    assert.equal(missing.code, 3);
    assert.match(missing.stderr, /^capsule: VM_NOT_FOUND: /);
    const badKey = await capsule(["vm", "list"], { url: t.get().url, key: "cap_wrong" });
    assert.equal(badKey.code, 4);
    assert.match(badKey.stderr, /UNAUTHORIZED/);
  });

  it("vm exec passes exit codes, users, stdin and output through", async (ctx) => {
    if (t.skip() || !vmId) return ctx.skip(String(t.skip() || "no VM"));
    const hi = await run(["vm", "exec", vmId, "--", "echo hi; echo err >&2"]);
    assert.deepEqual([hi.code, hi.stdout, hi.stderr], [0, "hi\n", "err\n"]);
    assert.equal((await run(["vm", "exec", vmId, "--", "exit 7"])).code, 7);
    // Several words are an argv, kept exactly (as docker/kubectl exec do); one word is a shell command line.
    assert.equal((await run(["vm", "exec", vmId, "--", "sh", "-c", "exit 7"])).code, 7);
    const argv = await run(["vm", "exec", vmId, "--", "printf", "%s|", "one two", "three"]);
    assert.deepEqual([argv.code, argv.stdout], [0, "one two|three|"]);
    const literal = await run(["vm", "exec", vmId, "--", "echo", "$HOME", "it's", "a;b", "*", "", "~"]);
    assert.equal(literal.stdout, "$HOME it's a;b *  ~\n");
    assert.equal((await run(["vm", "exec", vmId, "--", "kill -9 $$"])).code, 137);
    assert.equal((await run(["vm", "exec", vmId, "--user", "claude", "--", "id -un"])).stdout, "claude\n");
    const piped = await run(["vm", "exec", vmId, "-i", "--", "wc -c"], randomBytes(300_000));
    assert.equal(piped.stdout.trim(), "300000");
    const json = JSON.parse((await run(["vm", "exec", vmId, "--json", "--", "echo j; exit 3"])).stdout) as { stdout: string; statusCode: number };
    assert.deepEqual(json, { stdout: "j\n", stderr: "", statusCode: 3 });
    const env = await run(["vm", "exec", vmId, "--cwd", "/tmp", "-e", "A=b c", "--", 'echo "$(pwd) $A"']);
    assert.equal(env.stdout, "/tmp b c\n");
    const gone = await run(["vm", "exec", "no-such-vm", "--", "true"]);
    assert.equal(gone.code, 125);
    assert.match(gone.stderr, /VM_NOT_FOUND/);
    assert.equal((await run(["vm", "exec", vmId, "--user", "nobody-here", "--", "true"])).code, 125);
  });

  it("vm cp round trip, host → VM → host", async (ctx) => {
    if (t.skip() || !vmId) return ctx.skip(String(t.skip() || "no VM"));
    const dir = await tmp;
    const src = path.join(dir, "in.bin");
    const data = randomBytes(5 * 1024 * 1024 + 17);
    await fs.writeFile(src, data, { mode: 0o750 });
    const up = await run(["vm", "cp", src, `${vmId}:/srv/data/`]);
    assert.equal(up.code, 0, up.stderr);
    const inVm = await run(["vm", "exec", vmId, "--", "sha256sum /srv/data/in.bin | cut -d' ' -f1; stat -c %a /srv/data/in.bin"]);
    assert.equal(inVm.stdout, `${sha256(data)}\n750\n`);
    const down = await run(["vm", "cp", `${vmId}:/srv/data/in.bin`, path.join(dir, "out.bin")]);
    assert.equal(down.code, 0, down.stderr);
    assert.equal(sha256(await fs.readFile(path.join(dir, "out.bin"))), sha256(data));
    const toDir = await run(["vm", "cp", `${vmId}:/srv/data/in.bin`, `${dir}/`]);
    assert.equal(toDir.code, 0);
    assert.equal(sha256(await fs.readFile(path.join(dir, "in.bin"))), sha256(data));
    const stdout = await run(["vm", "cp", `${vmId}:/etc/hostname`, "-"]);
    assert.ok(stdout.stdout.length > 0);
    assert.equal((await run(["vm", "cp", "--user", "claude", src, `${vmId}:/root/nope.bin`])).code, 1);
    const missing = await run(["vm", "cp", `${vmId}:/no/such/file`, path.join(dir, "x")]);
    assert.equal(missing.code, 3);
    assert.match(missing.stderr, /FILE_NOT_FOUND/);
    assert.equal((await run(["vm", "cp", src, path.join(dir, "y")])).code, 2);
  });

  it("vm service create / list / status / logs / stop / start / restart / delete, as a user too", async (ctx) => {
    if (t.skip() || !vmId) return ctx.skip(String(t.skip() || "no VM"));
    const created = await run(["vm", "service", "create", vmId, "ticker", "--restart", "on-failure", "-e", "WORD=tick", "--", "while true; do echo $WORD; sleep 0.2; done"]);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /ticker created: active \(running\)/);
    assert.match((await run(["vm", "service", "list", vmId])).stdout, /^NAME\s+ACTIVE\s+SUB[\s\S]*ticker\s+active\s+running\s+root\s+yes/m);
    assert.match((await run(["vm", "service", "status", vmId, "ticker"])).stdout, /^ticker\.service {2}active \(running\)/);
    await new Promise((r) => setTimeout(r, 500));
    const logs = JSON.parse((await run(["vm", "service", "logs", vmId, "ticker", "--lines", "2", "--json"])).stdout) as { logs: Array<{ message: string }> };
    assert.deepEqual(logs.logs.map((l) => l.message), ["tick", "tick"]);
    assert.equal((await run(["vm", "service", "stop", vmId, "ticker"])).code, 0);
    assert.match((await run(["vm", "service", "status", vmId, "ticker"])).stdout, /inactive \(dead\)/);
    assert.equal((await run(["vm", "service", "restart", vmId, "ticker"])).code, 0);
    const asClaude = await run(["vm", "service", "--user", "claude", "create", vmId, "mine", "--", "id -un; exec sleep 1000"]);
    assert.equal(asClaude.code, 0, asClaude.stderr);
    assert.match((await run(["vm", "service", "--user", "claude", "list", vmId])).stdout, /mine\s+active\s+running\s+claude/);
    const missing = await run(["vm", "service", "status", vmId, "nope"]);
    assert.equal(missing.code, 3);
    assert.match(missing.stderr, /^capsule: SERVICE_NOT_FOUND: /);
    assert.equal((await run(["vm", "service", "delete", vmId, "ticker", "mine"])).code, 0);
    assert.doesNotMatch((await run(["vm", "service", "list", vmId])).stdout, /ticker|mine/);
  });

  it("vm snapshot --memory and vm fork --count / --no-memory: a counter counts on in each live copy, not in a disk copy", async (ctx) => {
    if (t.skip() || !vmId) return ctx.skip(String(t.skip() || "no VM"));
    const counter = "setsid sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/n.new && mv /tmp/n.new /tmp/n; sleep 0.05; done' >/dev/null 2>&1 </dev/null & while [ ! -e /tmp/n ]; do sleep 0.01; done";
    assert.equal((await run(["vm", "exec", vmId, "--", counter])).code, 0);
    /** Whether the counter in `id` moves within a few seconds (it moves 20 times a second when its process runs). */
    const counting = async (id: string) => (await run(["vm", "exec", id, "--", "a=$(cat /tmp/n); for i in $(seq 100); do sleep 0.05; [ \"$(cat /tmp/n)\" != \"$a\" ] && exit 0; done; exit 1"])).code === 0;
    const made: string[] = [];
    try {
      const snap = await run(["vm", "snapshot", vmId, "--memory", "--json"]);
      assert.equal(snap.code, 0, snap.stderr);
      const { snapshotId } = JSON.parse(snap.stdout) as { snapshotId: string };
      assert.match((await run(["snapshot", "list"])).stdout, new RegExp(`${snapshotId}.*memory\\+disk`));
      const resumed = await run(["vm", "create", "--snapshot", snapshotId, "--idle-timeout", "none"]);
      assert.equal(resumed.code, 0, resumed.stderr);
      made.push(resumed.stdout.trim());
      assert.equal(await counting(resumed.stdout.trim()), true, "a VM from the memory snapshot counts on");

      const live = await run(["vm", "fork", vmId, "--count", "2"]);
      assert.equal(live.code, 0, live.stderr);
      const copies = live.stdout.trim().split("\n");
      made.push(...copies);
      assert.equal(copies.length, 2);
      for (const id of copies) assert.equal(await counting(id), true, `live copy ${id} counts on`);
      const disk = await run(["vm", "fork", vmId, "--no-memory", "--json"]);
      assert.equal(disk.code, 0, disk.stderr);
      const [diskCopy] = (JSON.parse(disk.stdout) as { forks: Array<{ id: string }> }).forks.map((f) => f.id);
      made.push(diskCopy!);
      assert.equal(await counting(diskCopy!), false, "a disk copy has the file, not the process");
      assert.equal((await run(["vm", "fork", vmId, "--count", "0"])).code, 2);
      assert.equal((await run(["snapshot", "delete", snapshotId])).code, 0);
    } finally {
      for (const id of made) await run(["vm", "delete", id]);
    }
  });

  it("snapshot create / list / delete, vm stop / start / delete; image list", async (ctx) => {
    if (t.skip() || !vmId) return ctx.skip(String(t.skip() || "no VM"));
    const snap = JSON.parse((await run(["snapshot", "create", vmId, "--name", "cli-snap", "--json"])).stdout) as { snapshotId: string };
    assert.ok(snap.snapshotId);
    const snaps = JSON.parse((await run(["snapshot", "list", "--json"])).stdout) as { snapshots: Array<{ snapshotId: string; name: string }> };
    assert.equal(snaps.snapshots.find((s) => s.snapshotId === snap.snapshotId)?.name, "cli-snap");
    assert.match((await run(["snapshot", "list"])).stdout, /cli-snap/);
    assert.equal((await run(["snapshot", "delete", snap.snapshotId])).code, 0);
    assert.equal((await run(["snapshot", "delete", snap.snapshotId])).code, 3);

    assert.equal((await run(["vm", "stop", vmId])).code, 0);
    assert.equal((JSON.parse((await run(["vm", "get", vmId, "--json"])).stdout) as { state: string }).state, "stopped");
    assert.equal((await run(["vm", "start", vmId])).code, 0);
    assert.equal((await run(["vm", "exec", vmId, "--", "cat /srv/data/in.bin | wc -c"])).stdout.trim(), String(5 * 1024 * 1024 + 17));
    assert.equal((await run(["vm", "delete", vmId])).code, 0);
    assert.equal((await run(["vm", "get", vmId])).code, 3);

    const images = JSON.parse((await run(["image", "list", "--json"])).stdout) as Array<{ name: string }>;
    assert.ok(images.some((i) => i.name === "trixie"));
  });
});

/**
 * `capsule snapshot build --spec` against a real server: the phases shown while it builds (lines,
 * not a terminal, with the running phase's log lines), the snapshot id printed, the cache on a second run, `build show` / `build logs`,
 * and a failing command: exit 1 with the failed phase's log tail. Plus the terminal rendering.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import type { BuildPhase } from "@capsule/sdk";
import { PhaseDisplay } from "../src/commands/build-progress.js";
import { capsule, useServer } from "../test-support/cli.js";

const phase = (name: string, state: BuildPhase["state"], startedAt: string, finishedAt: string | null): BuildPhase => ({ phaseId: `b-${name}`, buildId: "b", name, state, snapshotId: null, log: "", startedAt, finishedAt });

describe("capsule snapshot build", () => {
  const t = useServer();
  let dir: string | undefined;
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("a terminal gets one line per phase, redrawn in place", () => {
    let out = "";
    const display = new PhaseDisplay({ isTTY: true, write: (s: string) => ((out += s), true) });
    const t0 = "2026-01-01T00:00:00.000Z";
    display.show(new Map([["b", [phase("files", "running", t0, null)]]]), Date.parse(t0) + 1500);
    display.show(new Map([["b", [phase("files", "succeeded", t0, "2026-01-01T00:00:02.000Z"), phase("systemd", "running", "2026-01-01T00:00:02.000Z", null)]]]), Date.parse(t0) + 2500);
    const frames = out.split("\x1b[2F");
    assert.equal(frames.length, 2, "the second frame starts two lines up (the first frame's two lines)");
    assert.match(frames[0]!, /build b\n.*… files\s+1\.5s\n$/);
    assert.match(frames[1]!, /✓ files\s+2\.0s\n.*… systemd\s+0\.5s\n$/);
  });

  it("lines: a running phase's log is printed as it grows, whole lines only, and resumes after a rewritten log", () => {
    let out = "";
    const display = new PhaseDisplay({ write: (s: string) => ((out += s), true) });
    const t0 = "2026-01-01T00:00:00.000Z";
    const at = (state: BuildPhase["state"], log: string) => new Map([["b", [{ ...phase("systemd", state, t0, state === "running" ? null : "2026-01-01T00:00:03.000Z"), log }]]]);
    display.show(at("running", "one.service: activating\n--- one.service ---\nfirst\nhal"), Date.parse(t0) + 1000);
    display.show(at("running", "one.service: activating\n--- one.service ---\nfirst\nhalf done\n"), Date.parse(t0) + 2000);
    display.show(at("succeeded", "one.service: inactive\n--- one.service ---\nfirst\nhalf done\nlast"), Date.parse(t0) + 3000);
    assert.equal(out, "build b: systemd started\n  one.service: activating\n  --- one.service ---\n  first\n  half done\n  last\nbuild b: systemd succeeded (3.0s)\n");
  });

  it("builds with progress, then answers from the cache; build show and logs; a failure exits 1 with the log tail", { timeout: 240_000 }, async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const run = (args: string[]) => capsule(args, { url, key: keyA });
    dir = await mkdtemp(path.join(os.tmpdir(), "capsule-spec-"));
    const specFile = path.join(dir, "spec.json");
    // The sleep keeps the systemd phase running across a few progress polls.
    await writeFile(specFile, JSON.stringify({ additionalFiles: { "/etc/cli-spec": { content: "cli\n" } }, runCommands: ["echo slow-step-start; sleep 3; echo slow-step-done"] }));
    const discriminator = randomUUID();

    const built = await run(["snapshot", "build", "--spec", specFile, "--discriminator", discriminator, "--name", "cli-built"]);
    assert.equal(built.code, 0, built.stderr);
    const snapshotId = built.stdout.trim();
    assert.match(snapshotId, /^\S+$/);
    const buildId = /build (bld-[0-9a-f]+): systemd started/.exec(built.stderr)?.[1];
    assert.ok(buildId, `the systemd phase was shown while it ran:\n${built.stderr}`);
    assert.match(built.stderr, new RegExp(`build ${buildId}: snapshot succeeded \\(\\d+\\.\\ds\\)`), "and every phase's end, the last one too");
    assert.match(built.stderr, /^ {2}slow-step-start$/m, "the running command's output, as it came");

    const cached = await run(["snapshot", "build", "--spec", specFile, "--discriminator", discriminator, "--json"]);
    assert.equal(cached.code, 0, cached.stderr);
    assert.deepEqual(JSON.parse(cached.stdout), { ...JSON.parse(cached.stdout), snapshotId, buildId, cached: true });
    assert.match(cached.stderr, /nothing was built/);
    assert.doesNotMatch(cached.stderr, /started/);

    const show = await run(["build", "show", buildId]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /^state:\s+succeeded$/m);
    assert.match(show.stdout, new RegExp(`^snapshot:\\s+${snapshotId}$`, "m"));
    assert.match(show.stdout, /^systemd\s+succeeded\s+\d+\.\ds/m);
    const logs = await run(["build", "logs", buildId]);
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout, /^=== files \(succeeded\) ===\n[\s\S]*^=== systemd \(succeeded\) ===$/m, "each phase under its header");
    assert.equal((await run(["build", "logs", buildId, "--phase", "systemd"])).code, 0);
    assert.equal((await run(["build", "logs", buildId, "--phase", "nope"])).code, 3);

    await writeFile(specFile, JSON.stringify({ runCommands: ["echo cli-broken-step >&2; exit 4"], discriminator }));
    const failed = await run(["snapshot", "build", "--spec", specFile]);
    assert.equal(failed.code, 1);
    assert.equal(failed.stdout, "");
    assert.match(failed.stderr, /--- phase systemd failed; the end of its log ---\n[\s\S]*cli-broken-step/);
    assert.match(failed.stderr, /capsule: VM_SETUP_FAILED: /);
    const failedId = /build (bld-[0-9a-f]+)/.exec(failed.stderr)?.[1];
    assert.ok(failedId, failed.stderr);
    const failedLog = await run(["build", "logs", failedId, "--phase", "systemd"]);
    assert.match(failedLog.stdout, /cli-broken-step/, "a failed phase's log is printed bare");
  });
});

/**
 * How a restored copy gets its hostname, against fake runsc binaries that log their calls (the
 * real ones run in memory-snapshot.test): a runsc whose `--version` carries the
 * `capsule: restore-hostname` line (scripts/runsc-patches) set it during the restore, so no
 * `runsc exec` follows, and `--version` is asked once; any other runsc gets `exec hostname`.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { RunscRuntime } from "../src/runtime/runsc.js";

describe("runsc: a restored copy's hostname", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "capsule-runsc-hostname-"));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A fake runsc printing `version` for --version and logging every call to its own file. */
  const fake = (name: string, version: string): { rt: RunscRuntime; calls: () => string[] } => {
    const bin = path.join(dir, name);
    const log = path.join(dir, `${name}.calls`);
    fs.writeFileSync(`${bin}.version`, `${version}\n`);
    fs.writeFileSync(bin, `#!/bin/sh\necho "$*" >> "${log}"\n[ "$1" = --version ] && cat "${bin}.version"\nexit 0\n`, { mode: 0o755 });
    return { rt: new RunscRuntime(bin, path.join(dir, `${name}-root`), "systrap", "netstack"), calls: () => fs.readFileSync(log, "utf8").trim().split("\n") };
  };

  it("a patched runsc: no exec, --version asked once", async () => {
    const { rt, calls } = fake("patched", "runsc version 0.0~20240729.0\nspec: 1.2.0\ncapsule: restore-hostname");
    await rt.setHostname("vm-a", "vm-a");
    await rt.setHostname("vm-b", "vm-b");
    assert.deepEqual(calls(), ["--version"]);
  });

  it("any other runsc: `exec --cap=CAP_SYS_ADMIN <id> hostname <name>` for each copy", async () => {
    const { rt, calls } = fake("upstream", "runsc version release-20260401.0\nspec: 1.2.0");
    await rt.setHostname("vm-a", "vm-a");
    await rt.setHostname("vm-b", "vm-b");
    const root = path.join(dir, "upstream-root");
    assert.deepEqual(calls(), ["--version", `--root=${root} exec --cap=CAP_SYS_ADMIN vm-a hostname vm-a`, `--root=${root} exec --cap=CAP_SYS_ADMIN vm-b hostname vm-b`]);
  });
});

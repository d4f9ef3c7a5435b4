/**
 * resolveCwd: an exec or PTY without a cwd starts in the VM's workdir (the file a spec's
 * `workdir` build writes) when it names an existing directory, else in HOME, else in /; an
 * explicit cwd always wins. vmEnv: the VM's environment file (a Dockerfile's ENV), with what
 * is malformed dropped.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { UserInfo } from "../src/users.js";

const scratch = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-launch-"));
const workdirFile = path.join(scratch, "workdir");
const envFile = path.join(scratch, "env.json");
// The agent's config reads its overrides at import.
process.env.CAPSULE_WORKDIR_FILE = workdirFile;
process.env.CAPSULE_ENV_FILE = envFile;
const { resolveCwd, vmEnv } = await import("../src/launch.js");

const user = (home: string): UserInfo => ({ name: "u", uid: 1000, gid: 1000, groups: [], home, shell: "/bin/sh" });

describe("resolveCwd", () => {
  const home = path.join(scratch, "home");
  const app = path.join(scratch, "app");
  before(async () => {
    await fs.mkdir(home);
    await fs.mkdir(app);
  });
  after(() => fs.rm(scratch, { recursive: true, force: true }));

  it("without a workdir file: HOME, or / when HOME is missing", async () => {
    assert.equal(await resolveCwd(user(home), undefined), home);
    assert.equal(await resolveCwd(user(path.join(scratch, "nohome")), undefined), "/");
  });

  it("the VM's workdir when the file names an existing directory; an explicit cwd still wins", async () => {
    await fs.writeFile(workdirFile, `${app}\n`);
    assert.equal(await resolveCwd(user(home), undefined), app);
    assert.equal(await resolveCwd(user(home), home), home);
  });

  it("a workdir that is missing, not a directory or not absolute falls back to HOME", async () => {
    for (const text of [path.join(scratch, "gone"), workdirFile, "relative/dir", ""]) {
      await fs.writeFile(workdirFile, text);
      assert.equal(await resolveCwd(user(home), undefined), home, JSON.stringify(text));
    }
  });

  it("vmEnv: the file's string entries; nothing when missing, not JSON or not an object; bad entries dropped", async () => {
    assert.deepEqual(await vmEnv(), {});
    await fs.writeFile(envFile, JSON.stringify({ GREETING: "hello docker", PATH: "/opt/tools:/usr/bin", N: 1, "BAD NAME": "x", NUL: "a\0b" }));
    assert.deepEqual(await vmEnv(), { GREETING: "hello docker", PATH: "/opt/tools:/usr/bin" });
    for (const text of ["not json", "[1]", "null", '"s"']) {
      await fs.writeFile(envFile, text);
      assert.deepEqual(await vmEnv(), {}, text);
    }
  });

  it("what root in the VM may put there instead: a file over 64 KiB or a FIFO counts as absent, and nothing blocks", async () => {
    await fs.writeFile(envFile, JSON.stringify({ BIG: "x".repeat(64 * 1024) }));
    assert.deepEqual(await vmEnv(), {});
    await fs.rm(envFile);
    await fs.rm(workdirFile, { force: true });
    execFileSync("mkfifo", [envFile, workdirFile]);
    assert.deepEqual(await vmEnv(), {}, "a FIFO with no writer is not waited for");
    assert.equal(await resolveCwd(user(home), undefined), home);
    await fs.rm(envFile);
    await fs.rm(workdirFile);
  });
});

/** The CLI's pure command-line logic: which verb group to load, and `vm exec`'s words → the VM's shell command line. */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { describe, it } from "node:test";
import { groupOf } from "../src/argv.js";
import { execCommandLine } from "../src/commands/vm-exec.js";

/** What the VM's `/bin/sh -c LINE` runs, seen through printf: the argv of a command run as `printf '%s\0' LINE`. */
const argvOf = (line: string) => execFileSync("/bin/sh", ["-c", `printf '%s\\0' ${line}`], { encoding: "utf8" }).split("\0").slice(0, -1);

describe("capsule's command line", () => {
  it("groupOf: the first word that is neither an option nor a global option's value", () => {
    assert.equal(groupOf(["vm", "list"]), "vm");
    assert.equal(groupOf(["--api-url", "http://x", "--api-key", "k", "vm", "ls"]), "vm");
    assert.equal(groupOf(["--api-url=http://x", "snapshot", "list"]), "snapshot");
    assert.equal(groupOf(["--help"]), undefined);
    assert.equal(groupOf([]), undefined);
    assert.equal(groupOf(["--api-key", "vm"]), undefined);
  });

  it("vm exec: several words stay an argv; one word stays a shell command line", () => {
    assert.deepEqual(argvOf(execCommandLine(["%s|", "one two", "three"])), ["%s|", "one two", "three"]);
    const hostile = ["$(id)", "`id`", "a;b", "*", "", "~", "it's!", "x\ny", "-n"];
    assert.deepEqual(argvOf(execCommandLine(hostile)), hostile);
    assert.equal(execCommandLine(["cd /srv/app && ls"]), "cd /srv/app && ls");
    assert.equal(execCommandLine(["sh", "-c", "exit 7"]), "sh -c 'exit 7'");
  });
});

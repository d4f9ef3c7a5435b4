/** A service command's process group is signalled only while the group is still the command's. */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { EventEmitter, once } from "node:events";
import { test } from "node:test";
import { groupSignaller } from "../src/services/process.js";

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 20));
  return !alive(pid);
}

/** `sh -c script` leading its own process group, with the first line it prints. */
async function leader(script: string) {
  const child = spawn("/bin/sh", ["-c", script], { detached: true, stdio: ["ignore", "pipe", "ignore"] });
  const [first] = (await once(child.stdout, "data")) as [Buffer];
  return { child, printed: Number(first.toString().trim()) };
}

test("after the command exited, what it left in its group is still killed", async () => {
  const { child, printed: straggler } = await leader("sleep 30 & echo $!; exec 1>&-");
  const signal = groupSignaller(child, child.pid as number);
  if (child.exitCode === null) await once(child, "exit");
  assert.ok(alive(straggler), "the background sleep outlived its shell");
  signal("SIGKILL");
  assert.ok(await gone(straggler), "the leftover in the group was killed");
});

test("a group number reused by another process's own group after the exit is left alone", async () => {
  // The command exited and its group is empty; the kernel gave the number to a newcomer that
  // leads a group of its own (played here by a detached sleep whose pid we hand over).
  const exited = new EventEmitter();
  const { child: newcomer } = await leader("echo $$; exec sleep 30");
  const pid = newcomer.pid as number;
  const signal = groupSignaller(exited, pid);
  exited.emit("exit", 0, null);
  signal("SIGKILL");
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(alive(pid), "the unrelated group was not signalled");
  // While the leader is ours and alive, its group is signalled.
  const ours = groupSignaller(newcomer, pid);
  ours("SIGKILL");
  assert.ok(await gone(pid));
});

/**
 * DirWake, which wakes the host's wait for a guest agent's socket: a real directory and inotify.
 * The fallback delays are long (a minute) where the test shows that a change, not the fallback,
 * ended the wait: a wait that did not wake would time the test out.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { DirWake } from "../src/host/dir-wake.js";

const LONG_MS = 60_000;
const dirs: string[] = [];
const tempDir = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "capsule-dir-wake-"));
  dirs.push(dir);
  return dir;
};
after(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

describe("DirWake", () => {
  it("a file made in the directory ends the wait", async () => {
    const dir = tempDir();
    const wake = new DirWake(dir, 1);
    try {
      const waiting = wake.next(LONG_MS);
      fs.writeFileSync(path.join(dir, "agent.sock"), "");
      await waiting;
    } finally {
      wake.close();
    }
  });

  it("a change between two waits ends the next one at once", async () => {
    const dir = tempDir();
    const wake = new DirWake(dir, 1);
    try {
      await wake.next(1); // nothing changed: the fallback
      fs.writeFileSync(path.join(dir, "x"), "");
      await new Promise((r) => setTimeout(r, 50)); // the event arrives while no one waits
      await wake.next(LONG_MS);
    } finally {
      wake.close();
    }
  });

  it("a flood of changes gives waits no closer together than the minimum gap", async () => {
    const dir = tempDir();
    const wake = new DirWake(dir, 20);
    let flooding = true;
    const flood = (async () => {
      for (let i = 0; flooding; i++) {
        fs.writeFileSync(path.join(dir, `f${i % 8}`), String(i));
        await new Promise((r) => setImmediate(r));
      }
    })();
    try {
      const t0 = performance.now();
      for (let i = 0; i < 5; i++) await wake.next(LONG_MS);
      // Five waits, each at least 20 ms after the one before (the first may end at once).
      assert.ok(performance.now() - t0 >= 4 * 20 - 1, `5 waits took ${(performance.now() - t0).toFixed(1)} ms`);
    } finally {
      flooding = false;
      await flood;
      wake.close();
    }
  });

  it("without the directory every wait is the fallback; close ends a wait", async () => {
    const wake = new DirWake(path.join(tempDir(), "missing"), 1);
    await wake.next(5);
    const waiting = wake.next(LONG_MS);
    wake.close();
    await waiting;
  });
});

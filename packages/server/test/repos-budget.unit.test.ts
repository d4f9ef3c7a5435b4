/**
 * The mirrors' disk bookkeeping (repos/budget.ts) with a fake clock and sizes: room is made by
 * evicting the least recently used mirrors nobody holds, never a held one, nothing when even all
 * of them would not make room; mirrors unused past the idle time expire unless held.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MirrorBudget } from "../src/repos/budget.js";

describe("mirror budget", () => {
  it("evicts least recently used mirrors nobody holds, and refuses when even that cannot make room", () => {
    let t = 0;
    const b = new MirrorBudget(100, 1000, () => t);
    b.add("a", 40, 1);
    b.add("b", 40, 3);
    b.add("c", 10, 2);
    assert.deepEqual(b.makeRoom("c", 20), [], "growing within the total evicts nothing");
    t = 10;
    const holdB = b.hold("b");
    const holdNew = b.hold("new"); // as a fetch holds its own mirror
    assert.deepEqual(b.makeRoom("new", 30), ["a"], "the oldest unheld mirror goes first, just enough of them");
    assert.equal(b.used(), 50);
    b.setBytes("new", 30);
    assert.equal(b.makeRoom("new", 200), undefined, "past the total even with all unheld gone");
    assert.equal(b.used(), 80, "and a refusal evicts nothing");
    assert.deepEqual(b.makeRoom("new", 60), ["c"], "the held b stays");
    holdB();
    holdNew();
  });

  it("a mirror that never got bytes leaves no entry; expiry skips held mirrors and counts from the last release", () => {
    let t = 0;
    const b = new MirrorBudget(100, 1000, () => t);
    b.hold("failed")();
    assert.equal(b.makeRoom("x", 100)?.length, 0, "the failed first fetch takes no room");
    b.add("old", 10, 0);
    const release = b.hold("busy");
    b.setBytes("busy", 10);
    t = 5000;
    assert.deepEqual(b.expired(), ["old"], "held mirrors do not expire");
    release();
    t = 5500;
    assert.deepEqual(b.expired(), [], "the release counts as a use");
    t = 6001;
    assert.deepEqual(b.expired(), ["busy"]);
    assert.equal(b.used(), 0);
  });
});

import assert from "node:assert/strict";
import { test } from "node:test";
import { ByteRing } from "../src/byte-ring.js";

test("the ring keeps the newest bytes, in order, across wrap-arounds and growth", () => {
  const ring = new ByteRing(100_000);
  let all = Buffer.alloc(0);
  for (let i = 0; i < 500; i++) {
    const chunk = Buffer.alloc((i * 37) % 1500, i % 256);
    ring.push(chunk);
    all = Buffer.concat([all, chunk]);
    assert.deepEqual(ring.snapshot(), all.subarray(Math.max(0, all.length - 100_000)));
  }
});

test("a chunk larger than the ring keeps only its tail; clear empties it", () => {
  const ring = new ByteRing(10);
  ring.push(Buffer.from("abc"));
  ring.push(Buffer.from("0123456789ABCDEF"));
  assert.equal(ring.snapshot().toString(), "6789ABCDEF");
  ring.push(Buffer.from("xy"));
  assert.equal(ring.snapshot().toString(), "89ABCDEFxy");
  ring.clear();
  assert.equal(ring.snapshot().length, 0);
});

import assert from "node:assert/strict";
import { randomBytes, randomInt } from "node:crypto";
import { test } from "node:test";
import { FrameDecoder, FrameType, MAX_FRAME_PAYLOAD, encodeFrame, type Frame } from "@capsule/agent-protocol";

function decodeInChunks(stream: Buffer, nextSize: () => number): Frame[] {
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  for (let off = 0; off < stream.length; ) {
    const end = Math.min(stream.length, off + nextSize());
    frames.push(...decoder.push(stream.subarray(off, end)));
    off = end;
  }
  assert.equal(decoder.pending, 0);
  return frames;
}

test("frames survive any chunking, from single bytes to whole streams", () => {
  const sent: Frame[] = Array.from({ length: 200 }, (_, i) => ({
    type: (i % 5) + 1 === FrameType.Json ? FrameType.Json : FrameType.Stdout,
    payload: randomBytes(i % 7 === 0 ? randomInt(0, 300_000) : randomInt(0, 40)),
  }));
  const stream = Buffer.concat(sent.map((f) => encodeFrame(f.type, f.payload)));
  for (const nextSize of [() => 1, () => randomInt(1, 10), () => 65_536, () => randomInt(1, 200_000), () => stream.length]) {
    const got = decodeInChunks(stream, nextSize);
    assert.equal(got.length, sent.length);
    got.forEach((f, i) => {
      assert.equal(f.type, sent[i]?.type);
      assert.ok(f.payload.equals(sent[i]?.payload ?? Buffer.alloc(0)), `frame ${i}`);
    });
  }
});

test("a bad type or an oversized length is refused as soon as the header is in", () => {
  const oversized = Buffer.from([FrameType.Stdin, 0, 0, 0, 0]);
  oversized.writeUInt32BE(MAX_FRAME_PAYLOAD + 1, 1);
  for (const header of [Buffer.from([9, 0, 0, 0, 1]), oversized]) {
    const decoder = new FrameDecoder();
    assert.deepEqual(decoder.push(header.subarray(0, 3)), []);
    assert.throws(() => decoder.push(header.subarray(3)));
  }
});

test("with streamData, data payloads come in pieces that join to the frames sent, JSON and Eof whole", () => {
  const sent: Frame[] = Array.from({ length: 120 }, (_, i) => {
    const type = [FrameType.Json, FrameType.Stdin, FrameType.Stdout, FrameType.Stderr, FrameType.Eof][i % 5] as FrameType;
    return { type, payload: type === FrameType.Eof ? Buffer.alloc(0) : randomBytes(i % 7 === 0 ? randomInt(0, 300_000) : randomInt(0, 40)) };
  });
  const stream = Buffer.concat(sent.map((f) => encodeFrame(f.type, f.payload)));
  for (const nextSize of [() => 1, () => randomInt(1, 10), () => 65_536, () => randomInt(1, 200_000), () => stream.length]) {
    const decoder = new FrameDecoder({ streamData: true });
    const got: Frame[] = [];
    for (let off = 0; off < stream.length; ) {
      const end = Math.min(stream.length, off + nextSize());
      for (const f of decoder.push(stream.subarray(off, end))) {
        const last = got.at(-1);
        const isData = f.type === FrameType.Stdin || f.type === FrameType.Stdout || f.type === FrameType.Stderr;
        // A piece continues the frame before it only while that frame is short of its length.
        const open = last && last.type === f.type && isData && last.payload.length < (sent[got.length - 1]?.payload.length ?? 0);
        if (open) last.payload = Buffer.concat([last.payload, f.payload]);
        else got.push({ type: f.type, payload: f.payload });
        if (isData && f.payload.length > 0) assert.ok(f.payload.buffer === stream.buffer, "a piece is a view of the pushed bytes, not a copy");
      }
      off = end;
    }
    assert.equal(decoder.pending, 0);
    assert.equal(got.length, sent.length);
    got.forEach((f, i) => {
      assert.equal(f.type, sent[i]?.type);
      assert.ok(f.payload.equals(sent[i]?.payload ?? Buffer.alloc(0)), `frame ${i}`);
    });
  }
});

test("with streamData, a data frame begun and not finished is pending, and its header is checked first", () => {
  const decoder = new FrameDecoder({ streamData: true });
  const frame = encodeFrame(FrameType.Stdin, randomBytes(1000));
  assert.equal(decoder.push(frame.subarray(0, 300)).length, 1);
  assert.equal(decoder.pending, 300);
  assert.equal(decoder.push(frame.subarray(300)).length, 1);
  assert.equal(decoder.pending, 0);
  const oversized = Buffer.from([FrameType.Stdout, 0, 0, 0, 0]);
  oversized.writeUInt32BE(MAX_FRAME_PAYLOAD + 1, 1);
  assert.throws(() => new FrameDecoder({ streamData: true }).push(oversized), /exceeds the 1048576 byte limit/);
});

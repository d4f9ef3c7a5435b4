/**
 * The upload sink writes two blocks at once, so each write must say where in the file it goes:
 * a fake file handle whose writes finish in the other order than they were asked for (as the
 * thread pool may), and that copies the bytes only when a write runs, must end up holding exactly
 * what was uploaded.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileSink } from "../src/files-root.js";

/** A file in memory; a write without a position appends where the file ends when it runs, as write(2) does. */
function fakeFile() {
  let file = Buffer.alloc(0);
  let calls = 0;
  const handle = {
    async write(buf: Buffer, off = 0, len = buf.length - off, position?: number | null) {
      // Every other write waits: the later one runs first.
      await sleep(calls++ % 2 === 0 ? 20 : 0);
      // At most 300 KiB per call: short writes happen and must be continued.
      const n = Math.min(len, 300 * 1024);
      const at = typeof position === "number" ? position : file.length;
      if (file.length < at + n) file = Buffer.concat([file, Buffer.alloc(at + n - file.length)]);
      buf.copy(file, at, off, off + n);
      return { bytesWritten: n, buffer: buf };
    },
    async datasync() {},
  };
  return { handle: handle as unknown as FileHandle, contents: () => file };
}

test("an upload lands in the file byte for byte though its block writes finish out of order", async () => {
  const data = randomBytes(3 * 1024 * 1024 + 12345);
  const { handle, contents } = fakeFile();
  const chunks = Array.from({ length: Math.ceil(data.length / 65536) }, (_, i) => data.subarray(i * 65536, (i + 1) * 65536));
  await pipeline(Readable.from(chunks), fileSink(handle));
  assert.equal(contents().length, data.length);
  assert.ok(contents().equals(data), "the file holds the upload");
});

/** The sd_notify side of the supervisor that needs no socket: datagram parsing and the relay's records. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { MAX_NOTIFY_DATAGRAM, MAX_STATUS_CHARS, RecordReader, parseNotify, sessionOf } from "../src/services/notify.js";

test("parseNotify takes the keys it acts on and skips everything else", () => {
  assert.deepEqual(parseNotify(Buffer.from("READY=1\nSTATUS=warming up\nWATCHDOG=1\nWATCHDOG_USEC=2500000\nSTOPPING=1\nMAINPID=7\n")), {
    ready: true,
    status: "warming up",
    watchdog: "ping",
    watchdogUsec: 2500000,
    stopping: true,
    mainPid: true,
  });
  assert.deepEqual(parseNotify(Buffer.from("READY=0\nREADY\n=1\nWATCHDOG=2\nWATCHDOG_USEC=0\nWATCHDOG_USEC=-5\nWATCHDOG_USEC=1e9\nFOO=bar\n\0\xff")), {});
  assert.deepEqual(parseNotify(Buffer.from("WATCHDOG=trigger")), { watchdog: "trigger" });
  assert.equal(parseNotify(Buffer.from(`STATUS=a\tb\u001b[31m${"x".repeat(1000)}`)).status, `a b [31m${"x".repeat(MAX_STATUS_CHARS - 8)}`);
});

test("RecordReader splits records across chunks and refuses one longer than a datagram", () => {
  const got: Array<[number, string]> = [];
  const reader = new RecordReader((pid, payload) => got.push([pid, payload.toString()]));
  const record = (pid: number, text: string) => {
    const head = Buffer.alloc(8);
    head.writeUInt32LE(Buffer.byteLength(text), 0);
    head.writeInt32LE(pid, 4);
    return Buffer.concat([head, Buffer.from(text)]);
  };
  const bytes = Buffer.concat([record(0, ""), record(42, "READY=1"), record(43, "STATUS=x")]);
  for (let i = 0; i < bytes.length; i += 3) reader.push(bytes.subarray(i, i + 3));
  assert.deepEqual(got, [
    [0, ""],
    [42, "READY=1"],
    [43, "STATUS=x"],
  ]);
  const huge = Buffer.alloc(8);
  huge.writeUInt32LE(MAX_NOTIFY_DATAGRAM + 1, 0);
  assert.throws(() => reader.push(huge), /record of 4097 bytes/);
});

test("sessionOf reads a live process's session, and nothing for a gone one", () => {
  assert.equal(typeof sessionOf(process.pid), "number");
  assert.equal(sessionOf(2 ** 22 + 1), undefined);
});

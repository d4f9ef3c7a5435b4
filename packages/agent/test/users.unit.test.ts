import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { readTable } from "../src/users.js";

let dir = "";
before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-users-unit-"));
});
after(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("a table is parsed without comments or blank lines; a missing file is empty", async () => {
  const file = path.join(dir, "parse");
  await fs.writeFile(file, "# comment\nroot:x:0:0:root:/root:/bin/bash\n\nbob:x:1000:1000::/home/bob:/bin/sh\n");
  assert.deepEqual(await readTable(file), [
    ["root", "x", "0", "0", "root", "/root", "/bin/bash"],
    ["bob", "x", "1000", "1000", "", "/home/bob", "/bin/sh"],
  ]);
  assert.deepEqual(await readTable(path.join(dir, "missing")), []);
});

test("a file rewritten in place at once, same size, is read again (not cached while racy)", async () => {
  const file = path.join(dir, "racy");
  await fs.writeFile(file, "bob:x:1000:1000::/home/bob:/bin/sh\n");
  assert.equal((await readTable(file))[0]?.[2], "1000");
  await fs.writeFile(file, "bob:x:1001:1000::/home/bob:/bin/sh\n");
  assert.equal((await readTable(file))[0]?.[2], "1001");
});

test("a settled, cached file is read again after any change: in place, replaced, or removed", async () => {
  const file = path.join(dir, "settled");
  await fs.writeFile(file, "bob:x:1000:1000::/home/bob:/bin/sh\n");
  await sleep(2_100); // past the racy window: from now on the table is cached
  assert.equal((await readTable(file))[0]?.[2], "1000");
  assert.equal((await readTable(file))[0]?.[2], "1000");
  // Same size, same inode; mtime set back to what it was: the ctime still moves.
  const { atime, mtime } = await fs.stat(file);
  await fs.writeFile(file, "bob:x:1002:1000::/home/bob:/bin/sh\n");
  await fs.utimes(file, atime, mtime);
  assert.equal((await readTable(file))[0]?.[2], "1002");
  // Replaced by rename (what useradd and sed -i do).
  await fs.writeFile(`${file}.new`, "bob:x:1003:1000::/home/bob:/bin/sh\n");
  await fs.rename(`${file}.new`, file);
  assert.equal((await readTable(file))[0]?.[2], "1003");
  await fs.rm(file);
  assert.deepEqual(await readTable(file), []);
});

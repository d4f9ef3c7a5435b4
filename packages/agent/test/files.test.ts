import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { FrameType, type FsReadRequest, type FsWriteRequest, type Reply } from "@capsule/agent-protocol";
import { Client, call, expectError, sleep, startAgent, withUser, type Agent } from "../test-support/harness.js";

let agent: Agent;
let dir: string;
before(async () => {
  agent = await startAgent();
  dir = path.join(agent.dir, "files");
  fs.mkdirSync(dir, { mode: 0o755 });
  // The scratch dir is 0700; test users must be able to reach into it.
  fs.chmodSync(agent.dir, 0o755);
});
after(async () => {
  await agent?.stop();
});

async function writeFile(req: Omit<FsWriteRequest, "op">, chunks: Iterable<Buffer>): Promise<Reply> {
  const client = await Client.open(agent.socket, { op: "fs.write", ...req });
  try {
    for (const chunk of chunks) await client.sendStdin(chunk);
    client.sendEof();
    return await client.json(30_000);
  } finally {
    await client.close();
  }
}

/** Reads a file, hashing it as it streams. `reply` is the first reply (stat or error). */
async function readFile(req: Omit<FsReadRequest, "op">): Promise<{ reply: Reply; size: number; sha256: string; text: string }> {
  const client = await Client.open(agent.socket, { op: "fs.read", ...req });
  try {
    const reply = await client.json();
    const hash = createHash("sha256");
    let size = 0;
    let text = "";
    for (let frame = reply.type === "stat" ? await client.next() : undefined; frame; frame = await client.next()) {
      if (frame.type === FrameType.Eof) break;
      assert.equal(frame.type, FrameType.Stdout);
      hash.update(frame.payload);
      size += frame.payload.length;
      if (text.length < 1024) text += frame.payload.toString();
    }
    return { reply, size, sha256: hash.digest("hex"), text };
  } finally {
    await client.close();
  }
}

function tempFiles(where: string): string[] {
  return fs.readdirSync(where).filter((name) => name.startsWith(".capsule-write-"));
}

test("a 64 MiB write streams in and reads back identical", async () => {
  const target = path.join(dir, "big.bin");
  const hash = createHash("sha256");
  function* chunks(): Generator<Buffer> {
    for (let i = 0; i < 64; i++) {
      const chunk = randomBytes(1024 * 1024);
      hash.update(chunk);
      yield chunk;
    }
  }
  assert.deepEqual(await writeFile({ path: target, mode: 0o600 }, chunks()), { type: "ok", size: 64 * 1024 * 1024 });
  const expected = hash.digest("hex");
  const back = await readFile({ path: target });
  assert.equal(back.reply.type, "stat");
  if (back.reply.type === "stat") assert.deepEqual([back.reply.stat.kind, back.reply.stat.size, back.reply.stat.mode], ["file", 64 * 1024 * 1024, 0o600]);
  assert.equal(back.size, 64 * 1024 * 1024);
  assert.equal(back.sha256, expected);
  assert.deepEqual(tempFiles(dir), []);
});

test("reads honour offset and length; a directory is refused", async () => {
  const target = path.join(dir, "digits.txt");
  fs.writeFileSync(target, "0123456789");
  assert.equal((await readFile({ path: target, offset: 3, length: 4 })).text, "3456");
  assert.equal((await readFile({ path: target, offset: 8 })).text, "89");
  assert.equal((await readFile({ path: target, length: 0 })).size, 0);
  expectError((await readFile({ path: dir })).reply, "IS_A_DIRECTORY");
  expectError((await readFile({ path: path.join(dir, "missing") })).reply, "FILE_NOT_FOUND");
});

test("a write replaces a symlink at the target instead of following it", async () => {
  const victim = path.join(dir, "victim.txt");
  const link = path.join(dir, "link.txt");
  fs.writeFileSync(victim, "precious");
  fs.symlinkSync(victim, link);
  assert.equal((await writeFile({ path: link }, [Buffer.from("new")])).type, "ok");
  assert.equal(fs.lstatSync(link).isFile(), true);
  assert.equal(fs.readFileSync(link, "utf8"), "new");
  assert.equal(fs.readFileSync(victim, "utf8"), "precious");
});

test("a write keeps an existing file's mode and can create parents", async () => {
  const target = path.join(dir, "script.sh");
  fs.writeFileSync(target, "old", { mode: 0o750 });
  fs.chmodSync(target, 0o750);
  await writeFile({ path: target }, [Buffer.from("new")]);
  assert.equal(fs.statSync(target).mode & 0o777, 0o750);
  const deep = path.join(dir, "a/b/c.txt");
  expectError(await writeFile({ path: deep }, [Buffer.from("x")]), "FILE_NOT_FOUND");
  await writeFile({ path: deep, mkdirs: true }, [Buffer.from("x")]);
  assert.equal(fs.readFileSync(deep, "utf8"), "x");
  assert.equal(fs.statSync(deep).mode & 0o777, 0o644);
});

test("a connection dropped before Eof leaves the target alone and no temp file", async () => {
  const target = path.join(dir, "dropped.txt");
  fs.writeFileSync(target, "before");
  const client = await Client.open(agent.socket, { op: "fs.write", path: target });
  await client.sendStdin(Buffer.alloc(100_000, 1));
  await sleep(100);
  await client.close();
  await sleep(200);
  assert.equal(fs.readFileSync(target, "utf8"), "before");
  assert.deepEqual(tempFiles(dir), []);
});

test("paths must be absolute and free of NUL bytes", async () => {
  expectError(await call(agent.socket, { op: "fs.stat", path: "relative/file" }), "BAD_REQUEST");
  expectError(await call(agent.socket, { op: "fs.read", path: "/etc/passwd\0x" }), "BAD_REQUEST");
  expectError(await call(agent.socket, { op: "fs.write", path: "./x" }), "BAD_REQUEST");
});

test("stat, list, exists, mkdir and remove", async () => {
  const sub = path.join(dir, "tree");
  assert.deepEqual(await call(agent.socket, { op: "fs.mkdir", path: `${sub}/x/y`, recursive: true, mode: 0o700 }), { type: "ok" });
  assert.equal(fs.statSync(`${sub}/x/y`).mode & 0o777, 0o700);
  expectError(await call(agent.socket, { op: "fs.mkdir", path: sub }), "ALREADY_EXISTS");
  fs.writeFileSync(`${sub}/b.txt`, "bb");
  fs.symlinkSync("b.txt", `${sub}/a-link`);
  assert.deepEqual(await call(agent.socket, { op: "fs.list", path: sub }), {
    type: "list",
    entries: [
      { name: "a-link", kind: "symlink" },
      { name: "b.txt", kind: "file" },
      { name: "x", kind: "directory" },
    ],
  });
  const st = await call(agent.socket, { op: "fs.stat", path: `${sub}/a-link` });
  assert.equal(st.type === "stat" && st.stat.kind, "symlink");
  assert.deepEqual(await call(agent.socket, { op: "fs.exists", path: `${sub}/b.txt` }), { type: "exists", exists: true });
  assert.deepEqual(await call(agent.socket, { op: "fs.exists", path: `${sub}/nope` }), { type: "exists", exists: false });
  expectError(await call(agent.socket, { op: "fs.list", path: `${sub}/b.txt` }), "NOT_A_DIRECTORY");
  expectError(await call(agent.socket, { op: "fs.remove", path: sub }), "DIRECTORY_NOT_EMPTY");
  assert.deepEqual(await call(agent.socket, { op: "fs.remove", path: sub, recursive: true }), { type: "ok" });
  assert.equal(fs.existsSync(sub), false);
  expectError(await call(agent.socket, { op: "fs.remove", path: sub }), "FILE_NOT_FOUND");
});

test("user-scoped file operations act with the user's permissions", async () => {
  await withUser(async (user) => {
    const home = path.join(dir, `home-${user.name}`);
    fs.mkdirSync(home);
    fs.chownSync(home, user.uid, user.gid);

    const mine = path.join(home, "sub/mine.txt");
    assert.deepEqual(await writeFile({ path: mine, user: user.name, mkdirs: true, mode: 0o640 }, [Buffer.from("hello")]), { type: "ok", size: 5 });
    const st = fs.statSync(mine);
    assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [user.uid, user.gid, 0o640]);
    assert.equal(fs.statSync(path.dirname(mine)).uid, user.uid);
    assert.equal((await readFile({ path: mine, user: user.name, offset: 1 })).text, "ello");

    const secret = path.join(dir, "secret.txt");
    fs.writeFileSync(secret, "root only", { mode: 0o600 });
    expectError((await readFile({ path: secret, user: user.name })).reply, "PERMISSION_DENIED");
    // A symlink the user planted pointing at root's file gets no further.
    fs.symlinkSync(secret, path.join(home, "planted"));
    expectError((await readFile({ path: path.join(home, "planted"), user: user.name })).reply, "PERMISSION_DENIED");
    // Nor can the user write, make or remove anything in a directory only root may write.
    expectError(await writeFile({ path: path.join(dir, "intruder.txt"), user: user.name }, [Buffer.from("x")]), "PERMISSION_DENIED");
    expectError(await call(agent.socket, { op: "fs.mkdir", path: path.join(dir, "intruder"), user: user.name }), "PERMISSION_DENIED");
    expectError(await call(agent.socket, { op: "fs.remove", path: secret, user: user.name }), "PERMISSION_DENIED");
    assert.equal(fs.existsSync(path.join(dir, "intruder.txt")), false);
    assert.deepEqual(tempFiles(dir), []);

    // The helper commits only after Eof: a hang-up mid-upload leaves the old file and no temp file.
    const dropped = await Client.open(agent.socket, { op: "fs.write", path: mine, user: user.name });
    await dropped.sendStdin(Buffer.alloc(100_000, 1));
    await sleep(100);
    await dropped.close();
    await sleep(300);
    assert.equal(fs.readFileSync(mine, "utf8"), "hello");
    assert.deepEqual(tempFiles(path.dirname(mine)), []);

    assert.deepEqual(await call(agent.socket, { op: "fs.list", path: home, user: user.name }), {
      type: "list",
      entries: [
        { name: "planted", kind: "symlink" },
        { name: "sub", kind: "directory" },
      ],
    });
    const stat = await call(agent.socket, { op: "fs.stat", path: mine, user: user.name });
    assert.equal(stat.type === "stat" && stat.stat.size, 5);
    assert.deepEqual(await call(agent.socket, { op: "fs.exists", path: path.join(home, "nope"), user: user.name }), { type: "exists", exists: false });
    assert.deepEqual(await call(agent.socket, { op: "fs.mkdir", path: path.join(home, "d/e"), recursive: true, user: user.name }), { type: "ok" });
    assert.equal(fs.statSync(path.join(home, "d/e")).uid, user.uid);
    assert.deepEqual(await call(agent.socket, { op: "fs.remove", path: path.join(home, "d"), recursive: true, user: user.name }), { type: "ok" });
    assert.equal(fs.existsSync(path.join(home, "d")), false);
    expectError(await call(agent.socket, { op: "fs.stat", path: home, user: "no-such-user-here" }), "USER_NOT_FOUND");
  });
});

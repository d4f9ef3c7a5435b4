#!/usr/bin/env node
// Builds the guest agent bundle, which every VM mounts read-only at /.capsule:
//
//   node packages/agent/scripts/bundle.mjs DIR
//
// DIR/<hash>/ holds one bundle (node and its libraries, tini, the spawn helper, agent/main.js and
// agent/main.blob, the V8 startup snapshot of main.js that VMs start from) and DIR/current links
// to the newest (the engine resolves the link when it starts a VM). A bundle is built in a temp
// dir and renamed into place, and the link is swapped atomically, so no one ever sees a
// half-built bundle, and a bundle a running VM has mounted is never touched. Building the same
// sources again changes nothing.
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { compileHelper } from "./compile-helper.mjs";

const PACKAGE_DIR = fileURLToPath(new URL("..", import.meta.url));
const PROTOCOL_SOURCE = path.join(PACKAGE_DIR, "../agent-protocol/src/index.ts");
const TINI = "/usr/bin/tini-static";
const LOADER = "ld-linux-x86-64.so.2";
/** The startup snapshot, beside main.js. V8 never writes the same blob twice, so it is not hashed. */
const SNAPSHOT = "agent/main.blob";

function say(message) {
  console.log(message);
}

function fail(message) {
  console.error(`bundle: ${message}`);
  process.exit(1);
}

/** Every shared library ldd lists for `binary`, loader included, as absolute paths. */
function sharedLibraries(binary) {
  const out = execFileSync("ldd", [binary], { encoding: "utf8" });
  return out.split("\n").flatMap((line) => {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    return m ? [m[1]] : [];
  });
}

function copy(from, to, mode) {
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.copyFileSync(from, to); // follows symlinks, like cp -L
  fs.chmodSync(to, mode);
}

function copyNode(out) {
  copy(process.execPath, path.join(out, "bin/node"), 0o755);
  say(`  bin/node             ${process.execPath} (${process.version})`);
}

function copyLibraries(out, binaries) {
  const libs = new Set(binaries.flatMap(sharedLibraries));
  for (const lib of libs) copy(lib, path.join(out, "lib", path.basename(lib)), 0o755);
  if (!fs.existsSync(path.join(out, "lib", LOADER))) fail(`ldd named no ${LOADER}; only x86-64 glibc hosts are supported`);
  say(`  lib/                 ${[...libs].map((l) => path.basename(l)).join(", ")}`);
}

function copyTini(out) {
  if (!fs.existsSync(TINI)) fail(`${TINI} is missing: install Debian's tini package (apt-get install tini)`);
  copy(TINI, path.join(out, "bin/tini"), 0o755);
  say(`  bin/tini             ${TINI}`);
}

function buildHelper(out) {
  const target = path.join(out, "bin/capsule-spawn");
  try {
    compileHelper(target);
  } catch (err) {
    fail(err.message);
  }
  fs.chmodSync(target, 0o755);
  say("  bin/capsule-spawn    native/capsule-spawn.c, gcc -static");
}

async function buildAgent(out) {
  const esbuild = await import("esbuild").catch(() => fail("esbuild is missing: run npm ci at the repository root"));
  const outfile = path.join(out, "agent/main.js");
  await esbuild.build({
    entryPoints: [path.join(PACKAGE_DIR, "src/main.ts")],
    outfile,
    bundle: true,
    platform: "node",
    target: "node20",
    // CommonJS needs no package.json beside it to tell Node how to load it.
    format: "cjs",
    alias: {
      // From source, so the bundle never carries a stale build of the protocol.
      "@capsule/agent-protocol": PROTOCOL_SOURCE,
      // A loader that finds the real node-pty at run time, from the snapshot too.
      "node-pty": path.join(PACKAGE_DIR, "scripts/load-node-pty.cjs"),
    },
    legalComments: "none",
    logLevel: "warning",
  });
  fs.chmodSync(outfile, 0o644);
  say("  agent/main.js        src/main.ts, esbuild (node20, cjs)");
}

/**
 * agent/main.blob: main.js run to the point where it would start serving (every module loaded and
 * initialised), saved as a V8 startup snapshot. Inside gVisor, starting from it saves the agent
 * most of its module loading (~15 ms of ~115 from process start to listening, measured in a VM).
 * It is built with no environment, so the configuration it holds is the VM's defaults; on a host,
 * with the CAPSULE_* overrides, run main.js. Node warns that child_process is "not yet fully
 * verified" in snapshots; the agent only calls it after deserialization, which the tests cover.
 */
function buildSnapshot(out) {
  const blob = path.join(out, SNAPSHOT);
  try {
    execFileSync(process.execPath, ["--snapshot-blob", blob, "--build-snapshot", path.join(out, "agent/main.js")], { cwd: out, env: {}, stdio: ["ignore", "ignore", "pipe"] });
  } catch (err) {
    fail(`cannot build the startup snapshot: ${err.stderr?.toString() || err.message}`);
  }
  fs.chmodSync(blob, 0o644);
  say(`  ${SNAPSHOT.padEnd(20)} V8 startup snapshot of agent/main.js (${(fs.statSync(blob).size / 2 ** 20).toFixed(1)} MiB)`);
}

/** node-pty's runtime: its package.json, compiled lib/ (no tests, no maps) and the native addon. */
function copyNodePty(out) {
  const require = createRequire(path.join(PACKAGE_DIR, "package.json"));
  const src = path.dirname(require.resolve("node-pty/package.json"));
  const dest = path.join(out, "agent/node_modules/node-pty");
  copy(path.join(src, "package.json"), path.join(dest, "package.json"), 0o644);
  for (const file of fs.readdirSync(path.join(src, "lib"), { recursive: true })) {
    if (file.endsWith(".js") && !file.endsWith(".test.js")) copy(path.join(src, "lib", file), path.join(dest, "lib", file), 0o644);
  }
  const addon = path.join(src, "build/Release/pty.node");
  if (!fs.existsSync(addon)) fail(`${addon} is missing: node-pty was not built (npm ci with a C++ toolchain)`);
  copy(addon, path.join(dest, "build/Release/pty.node"), 0o755);
  say(`  agent/node_modules/  node-pty ${require("node-pty/package.json").version} from ${src}`);
  return addon;
}

function copyInputrc(out) {
  copy(path.join(PACKAGE_DIR, "inputrc"), path.join(out, "inputrc"), 0o644);
  say("  inputrc              readline init for PTY shells (passes 0x1E through)");
}

/**
 * sha256 over every file's path, mode and bytes, in a fixed order; the snapshot only by its path,
 * since it follows from bin/node and agent/main.js, which are hashed.
 */
function contentHash(dir) {
  const hash = createHash("sha256");
  const files = fs.readdirSync(dir, { recursive: true }).filter((f) => fs.statSync(path.join(dir, f)).isFile()).sort();
  for (const file of files) {
    const full = path.join(dir, file);
    hash.update(`${file}\0${(fs.statSync(full).mode & 0o7777).toString(8)}\0`);
    if (file !== SNAPSHOT) hash.update(fs.readFileSync(full));
  }
  return hash.digest("hex");
}

/** Points DIR/current at `name` by renaming a fresh link over it: readers see old or new. */
function switchCurrent(dir, name) {
  const tmpLink = path.join(dir, `.current-${randomBytes(4).toString("hex")}`);
  fs.symlinkSync(name, tmpLink);
  fs.renameSync(tmpLink, path.join(dir, "current"));
}

async function main() {
  const arg = process.argv[2];
  if (!arg) fail("usage: node bundle.mjs DIR");
  if (process.platform !== "linux" || process.arch !== "x64") fail("the bundle carries this host's Node, so it must be built on x86-64 Linux");
  const dir = path.resolve(arg);
  fs.mkdirSync(dir, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(dir, ".build-"));
  try {
    say(`building the agent bundle in ${tmp}`);
    copyNode(tmp);
    buildHelper(tmp);
    copyTini(tmp);
    await buildAgent(tmp);
    buildSnapshot(tmp);
    const addon = copyNodePty(tmp);
    copyLibraries(tmp, [process.execPath, addon]);
    copyInputrc(tmp);
    const hash = contentHash(tmp);
    fs.writeFileSync(path.join(tmp, "VERSION"), `${hash}\n`, { mode: 0o644 });
    fs.chmodSync(tmp, 0o755);
    const name = hash.slice(0, 16);
    const final = path.join(dir, name);
    if (fs.existsSync(final)) {
      say(`unchanged: ${final} already holds this bundle`);
    } else {
      fs.renameSync(tmp, final);
      say(`built ${final}`);
    }
    switchCurrent(dir, name);
    say(`${path.join(dir, "current")} -> ${name} (VERSION ${hash})`);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

await main();

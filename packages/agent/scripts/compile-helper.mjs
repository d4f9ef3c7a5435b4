#!/usr/bin/env node
// Compiles native/capsule-spawn.c into a static binary: `node compile-helper.mjs OUTPUT`.
// Also imported by bundle.mjs, so the compiler flags live in one place.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const SOURCE = fileURLToPath(new URL("../native/capsule-spawn.c", import.meta.url));
const SOURCES = [SOURCE, ...["zygote.c", "notify.c"].map((f) => fileURLToPath(new URL(`../native/${f}`, import.meta.url)))];

export function compileHelper(output) {
  try {
    execFileSync("gcc", ["-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", output, ...SOURCES], { stdio: ["ignore", "inherit", "pipe"] });
  } catch (err) {
    const stderr = err.stderr?.toString() ?? "";
    if (err.code === "ENOENT") throw new Error("gcc not found: install it (apt-get install gcc libc6-dev)");
    if (/cannot find -lc|stdio\.h: No such file/.test(stderr)) throw new Error(`static libc missing: install libc6-dev\n${stderr}`);
    throw new Error(`compiling ${SOURCE} failed:\n${stderr}`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (!process.argv[2]) {
    console.error("usage: node compile-helper.mjs OUTPUT");
    process.exit(2);
  }
  compileHelper(process.argv[2]);
}

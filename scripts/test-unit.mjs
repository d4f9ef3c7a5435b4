#!/usr/bin/env node
// The unit tier (`npm run test:unit`, after `tsc -b`): every packages/*/test/**/*.unit.test.ts,
// run from its compiled dist/test/ file. These tests need neither root, nor a sandbox, nor a
// server process (an in-process HTTP server on 127.0.0.1 is fine). The suites are listed from
// the sources, so a suite renamed or removed never runs from a stale dist file.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const UNIT = /\.unit\.test\.tsx?$/;

function walk(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? walk(p) : e.isFile() && UNIT.test(e.name) ? [p] : [];
  });
}

const suites = [];
for (const pkg of fs.readdirSync(path.join(root, "packages")).sort()) {
  const pkgDir = path.join("packages", pkg);
  for (const src of walk(path.join(root, pkgDir, "test")).sort()) {
    const rel = path.relative(path.join(root, pkgDir), src).replace(/\.tsx?$/, ".js");
    const built = path.join(pkgDir, "dist", rel);
    if (!fs.existsSync(path.join(root, built))) {
      console.error(`test:unit: ${built} is missing: build first (npx tsc -b)`);
      process.exit(1);
    }
    suites.push(built);
  }
}
if (suites.length === 0) {
  console.error("test:unit: no *.unit.test.ts suites found under packages/*/test/");
  process.exit(1);
}
const r = spawnSync(process.execPath, ["--test", "--test-reporter=spec", ...process.argv.slice(2), ...suites], { cwd: root, stdio: "inherit" });
process.exit(r.status ?? 1);

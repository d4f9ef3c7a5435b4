/**
 * What `capsule vm list` loads: the SDK and commander, never the server, the engine, SQLite,
 * hono, pino, ws or fetch (undici). Checked on the real binary with Node's own module hooks; the
 * server is unreachable on purpose (exit 5), so no root, VM or server is needed.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { after, describe, it } from "node:test";

/** dist/src/main.js, from dist/test/. */
const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../src/main.js");

describe("capsule start-up", () => {
  const dir = fs.mkdtemp(path.join(os.tmpdir(), "capsule-startup-"));
  after(async () => fs.rm(await dir, { recursive: true, force: true }));

  /** Runs the CLI with hooks that record every module URL it resolves and every builtin it loads. */
  async function loaded(args: string[]): Promise<{ code: number | null; urls: string[]; builtins: string[] }> {
    const d = await dir;
    const log = path.join(d, `${args.join("_").replace(/\W/g, "")}.log`);
    await fs.writeFile(path.join(d, "hooks.mjs"), `import fs from "node:fs";\nexport async function resolve(s, c, next) { const r = await next(s, c); fs.appendFileSync(process.env.LOG, r.url + "\\n"); return r; }\n`);
    await fs.writeFile(
      path.join(d, "register.mjs"),
      `import fs from "node:fs";\nimport { register } from "node:module";\nregister(${JSON.stringify(pathToFileURL(path.join(d, "hooks.mjs")).href)});\nprocess.on("exit", () => fs.appendFileSync(process.env.LOG, process.moduleLoadList.map((m) => "builtin:" + m).join("\\n")));\n`,
    );
    const code = await new Promise<number | null>((resolve) => {
      const child = execFile(process.execPath, ["--import", pathToFileURL(path.join(d, "register.mjs")).href, CLI, ...args], { env: { ...process.env, LOG: log, CAPSULE_API_URL: "http://127.0.0.1:9", CAPSULE_API_KEY: "k" } }, () => resolve(child.exitCode));
    });
    const lines = (await fs.readFile(log, "utf8")).split("\n").filter(Boolean);
    return { code, urls: lines.filter((l) => !l.startsWith("builtin:")), builtins: lines.filter((l) => l.startsWith("builtin:")).map((l) => l.slice("builtin:".length)) };
  }

  it("vm list loads the SDK only: no server, engine, SQLite, hono, pino, ws or undici", async () => {
    const r = await loaded(["vm", "list"]);
    assert.equal(r.code, 5, "the unreachable server is a connection error");
    assert.ok(r.urls.some((u) => u.includes("/packages/sdk/")), "the SDK is loaded");
    for (const heavy of ["/packages/server/", "/packages/engine/", "better-sqlite3", "/hono/", "/pino/", "/ws/", "/packages/cli/dist/src/commands/serve.js", "/packages/cli/dist/src/commands/image-build.js"]) {
      assert.ok(!r.urls.some((u) => u.includes(heavy)), `${heavy} must not load for vm list`);
    }
    assert.ok(!r.builtins.some((b) => b.includes("undici")), "fetch (undici) must not load for a JSON call");
  });

  it("--help still lists every verb group", async () => {
    const r = await loaded(["--help"]);
    assert.equal(r.code, 0);
    assert.ok(r.urls.some((u) => u.endsWith("/commands/serve.js")) && r.urls.some((u) => u.endsWith("/commands/claude.js")));
    assert.ok(!r.urls.some((u) => u.includes("/packages/server/")), "help does not load the server either");
  });
});

/** The last-resort guard: an error no handler caught is logged and the process keeps serving. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { it } from "node:test";

const GUARD = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../src/last-resort.js");

it("an uncaught exception and an unhandled rejection are logged, and the process goes on", () => {
  const script = `
    import http from "node:http";
    import pino from "pino";
    const { installLastResortGuard, lastResortCount } = await import(${JSON.stringify(GUARD)});
    installLastResortGuard(pino({ base: null }));
    const server = http.createServer((req, res) => res.end("still serving"));
    server.listen(0, "127.0.0.1", () => {
      setTimeout(() => { throw new Error("escaped-from-a-callback"); }, 10);
      setTimeout(() => { void Promise.reject(new Error("rejected-with-no-handler")); }, 20);
      setTimeout(async () => {
        const { port } = server.address();
        const body = await (await fetch("http://127.0.0.1:" + port)).text();
        console.log(JSON.stringify({ body, caught: lastResortCount() }));
        server.close();
      }, 100);
    });`;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 20_000, cwd: path.dirname(GUARD) });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  const result = JSON.parse(lines.at(-1) as string) as { body: string; caught: number };
  assert.deepEqual(result, { body: "still serving", caught: 2 });
  assert.match(r.stdout, /escaped-from-a-callback/);
  assert.match(r.stdout, /rejected-with-no-handler/);
});

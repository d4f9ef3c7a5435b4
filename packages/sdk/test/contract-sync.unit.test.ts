/**
 * Keeps the error vocabularies in step, both ways: the contract's registry, docs/errors.md, the
 * server's OpenAPI document and the SDK's codes and hints. A code (or a status) added on one side
 * only fails here (or, for the SDK's hint table, fails to compile).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { API_ERROR_DETAILS, API_ERRORS, API_ERROR_CODES as REGISTRY_CODES } from "@capsule/contract/errors";
import { openApiDocument } from "@capsule/server";
import { API_ERROR_CODES, CLIENT_ERROR_CODES, HINTS } from "../src/errors.js";

const DOC = fileURLToPath(new URL("../../../../docs/errors.md", import.meta.url));
const registry = new Set<string>(Object.keys(API_ERRORS));

/** The rows of the markdown table under `## <title>`, as arrays of cells (backticks removed from the first). */
function table(md: string, title: string): string[][] {
  const section = md.split(/^## /m).find((s) => s.startsWith(`${title}\n`));
  assert.ok(section, `docs/errors.md has a "## ${title}" section`);
  return section
    .split("\n")
    .filter((l) => l.startsWith("| ") && !/^\|\s*-/.test(l))
    .slice(1) // the header row
    .map((l) =>
      l
        .slice(1, -1)
        .split(" | ")
        .map((c) => c.trim()),
    )
    .map(([first = "", ...rest]) => [first.replace(/`/g, ""), ...rest]);
}

/** Both directions at once, with the differences in the message. */
function sameSet(actual: Iterable<string>, expected: Iterable<string>, what: string): void {
  const a = new Set(actual);
  const e = new Set(expected);
  const missing = [...e].filter((x) => !a.has(x));
  const extra = [...a].filter((x) => !e.has(x));
  assert.deepEqual({ missing, extra }, { missing: [], extra: [] }, `${what}: missing = in the contract only, extra = not in the contract`);
}

describe("contract sync: registry, docs/errors.md, OpenAPI, SDK", () => {
  it("docs/errors.md lists every registry code with its status, retry flag and description, and nothing else", async () => {
    const rows = table(await readFile(DOC, "utf8"), "API codes");
    sameSet(
      rows.map((r) => r[0]!),
      registry,
      "docs/errors.md API codes",
    );
    assert.equal(rows.length, registry.size, "each code once");
    for (const [code, status, retry, when, todo] of rows) {
      const spec = API_ERRORS[code as keyof typeof API_ERRORS];
      assert.equal(Number(status), spec.status, `${code}: status`);
      assert.equal(retry, spec.retryable ? "yes" : "no", `${code}: retry`);
      assert.equal(when, spec.description, `${code}: "When it happens" is the registry's description`);
      assert.ok(todo && todo.length > 5, `${code}: says what the client should do`);
    }
  });

  it("docs/errors.md's other statuses name registry codes; its SDK codes are the SDK's client codes", async () => {
    const md = await readFile(DOC, "utf8");
    for (const [status, codes = ""] of table(md, "Other statuses")) {
      assert.match(status!, /^[45]\d\d$/);
      for (const c of codes.match(/[A-Z_]{3,}/g) ?? []) assert.ok(registry.has(c), `Other statuses: ${c} is not in the registry`);
    }
    const client = table(md, "SDK client codes").map((r) => r[0]!);
    assert.deepEqual([...client].sort(), [...CLIENT_ERROR_CODES].sort(), "docs/errors.md SDK client codes vs CLIENT_ERROR_CODES");
  });

  it("docs/errors.md and the OpenAPI Error schema list exactly the contract's detail fields", async () => {
    const md = await readFile(DOC, "utf8");
    const intro = md.split(/^## /m)[0]!;
    const documented = [...intro.matchAll(/^- `([A-Za-z]+)`: (.*)$/gm)].map(([, name, text]) => [name!, text!] as const);
    sameSet(
      documented.map(([n]) => n),
      Object.keys(API_ERROR_DETAILS),
      "docs/errors.md detail fields",
    );
    for (const [name, text] of documented) assert.equal(text, API_ERROR_DETAILS[name as keyof typeof API_ERROR_DETAILS], `docs/errors.md: ${name}`);
    const error = (await openApiDocument()).components.schemas.Error;
    const fields = Object.keys(error?.properties ?? {}).filter((k) => !["code", "error", "message"].includes(k));
    sameSet(fields, Object.keys(API_ERROR_DETAILS), "OpenAPI Error detail fields");
  });

  it("the OpenAPI document's Error schema has exactly the registry's codes; every error answer uses it with a documented status", async () => {
    const doc = await openApiDocument();
    const error = doc.components.schemas.Error;
    assert.ok(error, "components.schemas.Error");
    sameSet(error.properties?.code?.enum ?? [], registry, "OpenAPI Error.code enum");
    sameSet(error.properties?.error?.enum ?? [], registry, "OpenAPI Error.error enum");
    for (const code of registry) assert.ok(error.description?.includes(`\`${code}\``), `Error's description documents ${code}`);
    // The exec-stream socket's error frame carries the same codes.
    const frames = (doc.components.schemas.ExecServerMessage as { oneOf?: Array<{ properties?: Record<string, { enum?: string[] }> }> } | undefined)?.oneOf ?? [];
    const errorFrame = frames.find((f) => f.properties?.type?.enum?.[0] === "error");
    assert.ok(errorFrame, "ExecServerMessage documents the error frame");
    sameSet(errorFrame.properties?.code?.enum ?? [], registry, "OpenAPI ExecServerMessage error.code enum");

    const md = await readFile(DOC, "utf8");
    const statuses = new Set([...Object.values(API_ERRORS).map((e) => String(e.status)), ...table(md, "Other statuses").map((r) => r[0]!)]);
    let answers = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        for (const [status, res] of Object.entries(op.responses ?? {})) {
          if (Number(status) < 400) continue;
          answers++;
          assert.ok(statuses.has(status), `${method.toUpperCase()} ${path}: error status ${status} is neither a registry status nor in docs/errors.md's other statuses`);
          assert.equal(res.content?.["application/json"]?.schema?.$ref, "#/components/schemas/Error", `${method.toUpperCase()} ${path} ${status} answers the Error schema`);
        }
      }
    }
    assert.ok(answers > 20, "the document describes error answers");
  });

  it("the SDK's API codes are the registry's, its client codes are separate, and it has a hint for each", () => {
    sameSet(API_ERROR_CODES, REGISTRY_CODES, "SDK API_ERROR_CODES");
    for (const c of CLIENT_ERROR_CODES) assert.ok(!registry.has(c), `client code ${c} must not be an API code`);
    sameSet(Object.keys(HINTS), [...REGISTRY_CODES, ...CLIENT_ERROR_CODES], "SDK HINTS");
  });

  it("the SDK loads no schema code at run time: none of its contract imports reaches zod", async () => {
    const { readdir } = await import("node:fs/promises");
    const contractDir = fileURLToPath(new URL("../../../contract/dist/src/", import.meta.url));
    /** Whether a compiled contract module loads zod, directly or through its relative imports. */
    const loadsZod = async (file: string, seen = new Set<string>()): Promise<boolean> => {
      if (seen.has(file)) return false;
      seen.add(file);
      const js = await readFile(contractDir + file, "utf8");
      for (const [, spec] of js.matchAll(/\b(?:from|import)\s*\(?\s*"([^"]+)"/g)) {
        if (spec === "zod" || spec!.startsWith("zod/")) return true;
        if (spec!.startsWith("./") && (await loadsZod(spec!.slice(2), seen))) return true;
      }
      return false;
    };
    const dir = fileURLToPath(new URL("../src/", import.meta.url));
    const files = (await readdir(dir, { recursive: true })).filter((f) => f.endsWith(".js"));
    assert.ok(files.length > 5);
    let contractImports = 0;
    for (const f of files) {
      const js = await readFile(dir + f, "utf8");
      assert.doesNotMatch(js, /\bfrom\s+"zod/, `${f} imports zod`);
      for (const [, spec] of js.matchAll(/\bfrom\s+"@capsule\/contract(\/[^"]*)?"/g)) {
        contractImports++;
        const sub = spec ? spec.slice(1) : "index";
        assert.equal(await loadsZod(`${sub}.js`), false, `${f} imports @capsule/contract${spec ?? ""}, which loads zod`);
      }
    }
    assert.ok(contractImports > 0, "the SDK uses the contract at run time (the registry)");
  });
});

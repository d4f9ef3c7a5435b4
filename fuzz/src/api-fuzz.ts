/**
 * The HTTP and WebSocket API fuzzer, with two tenants. Tenant A's VM carries a secret (in its name,
 * a file's content, a directory's name and a snapshot's name); B has a VM of its own. Requests go to
 * every route of `GET /openapi.json`, generated from its schemas and then mutated: path ids of the
 * caller, of the other tenant, or garbage; bodies with wrong types, huge strings, deep nesting,
 * invalid JSON, a wrong content type or an oversize length; bad auth and bad Linux-user headers;
 * the PTY and exec-stream WebSockets with mutated messages. Checks: every error is `{code,
 * message}` with a registry code; no 5xx but 501 (`unsupported`) and 503 SERVICE_UNAVAILABLE with a
 * reason; nothing but A ever sees the secret; the server lives; its RSS is sampled (peak reported).
 * Calls that would destroy or create the tenants' own resources (delete, stop, kill, fork, new
 * VMs, ...) are sent only in forms that must be refused (another tenant's id, garbage, bad auth or
 * an invalid body); one that succeeds anyway is a failure.
 */
import http from "node:http";
import { randomBytes } from "node:crypto";
import type WebSocket from "ws";
import { checkAnswer, Failures, requestIdOf, checkWs, jsonOf, mib, pool, request, Rng, sleep, wsCase, type Answer, type ServerProc, type WsOutcome } from "./common.js";

export interface ApiFuzzResult {
  fuzzer: "api";
  seed: number;
  cases: number;
  wsCases: number;
  routes: number;
  crashes: number;
  fiveXx: number;
  undocumented5xx: number;
  crossTenant: number;
  failures: string[];
  outcomes: Record<string, number>;
  leaks: string[];
  peakRssBytes: number;
  durationMs: number;
}

type Schema = { $ref?: string; type?: string | string[]; enum?: unknown[]; properties?: Record<string, Schema>; required?: string[]; items?: Schema; oneOf?: Schema[]; anyOf?: Schema[]; minimum?: number; maximum?: number; maxLength?: number; pattern?: string };
interface Operation {
  method: string;
  path: string;
  ws: boolean;
  body?: Schema;
  contentTypes: string[];
  query: string[];
}

/** Routes whose success on the caller's own resources would destroy, stop or create something. */
const GUARDED = new RegExp(
  [
    /^(DELETE \/v1\/vms\/\{vm_id\}|POST \/v1\/vms\/\{vm_id\}\/(start|stop|suspend|kill|await|optimize|snapshot|fork)|DELETE \/v1\/vms\/snapshots|PATCH \/v1\/vms\/snapshots|POST \/v1\/vms$)/.source,
    // The same on /v5, and its file removal (a fuzzed path could be `/`).
    /^(DELETE \/v5\/vms\/\{vm_id\}(\/fs\/remove)?$|POST \/v5\/vms\/\{vm_id\}\/(start|snapshot)$|(DELETE|PATCH) \/v5\/snapshots\/|POST \/v5\/vms$)/.source,
  ].join("|"),
);

const WEIRD: unknown[] = ["", "x", -1, 0, 1.5, 1e308, -0, true, false, null, [], {}, [1, "a"], { a: { b: {} } }, "\u0000", "\ud800", "💥", "../../etc/passwd", "%2e%2e%2f", "<script>", "'; DROP TABLE vms; --", 2 ** 53, "1e999"];

let OVERSIZE: string | undefined;
/** 65 MiB of text, made once: over the server's 64 MiB body limit. */
function oversize(): string {
  return (OVERSIZE ??= "o".repeat(65 << 20));
}

function deepValue(d: number): string {
  return "[".repeat(d) + "]".repeat(d);
}

export async function apiFuzz(srv: ServerProc, opts: { requests: number; seed: number; durationMs: number; concurrency: number; log: (s: string) => void }): Promise<ApiFuzzResult> {
  const t0 = Date.now();
  const rng = new Rng(opts.seed ^ 0x5eed);
  const agent = new http.Agent({ keepAlive: false, maxSockets: opts.concurrency + 2 });
  const failed = new Failures();
  const outcomes: Record<string, number> = {};
  let fiveXx = 0;
  let undocumented5xx = 0;
  let crossTenant = 0;
  const fail = (s: string) => failed.add(s);
  const SECRET = `S3CRET${randomBytes(8).toString("hex")}`;
  const keyOf = { A: srv.a.key, B: srv.b.key };
  const mustOk = async (who: "A" | "B", method: string, path: string, body?: unknown): Promise<Record<string, unknown>> => {
    const r = await request(agent, srv.url, { method, path, headers: { authorization: `Bearer ${keyOf[who]}`, ...(body === undefined ? {} : { "content-type": "application/json" }) }, body: body === undefined ? undefined : JSON.stringify(body), timeoutMs: 180_000 });
    if ("error" in r || r.status !== 200) throw new Error(`${method} ${path}: ${"error" in r ? r.error : `${r.status} ${r.body.toString().slice(0, 500)}`}`);
    return jsonOf(r) as Record<string, unknown>;
  };

  // The tenants' resources, A's carrying the secret.
  const vmA = (await mustOk("A", "POST", "/v1/vms", { idleTimeoutSeconds: null, name: `a-${SECRET}` })).id as string;
  const vmB = (await mustOk("B", "POST", "/v1/vms", { idleTimeoutSeconds: null, name: "b-plain" })).id as string;
  await mustOk("A", "PUT", `/v1/vms/${vmA}/files/${encodeURIComponent("/tmp/fuzz-secret.txt")}`, { content: SECRET, encoding: "utf8" });
  await mustOk("A", "PUT", `/v1/vms/${vmA}/files/${encodeURIComponent(`/tmp/${SECRET}/note.txt`)}`, { content: `the secret is ${SECRET}`, encoding: "utf8" });
  await mustOk("A", "POST", `/v1/vms/${vmA}/exec-await`, { command: `echo ${SECRET} > /root/.secret; mkdir -p /tmp/fuzz` });
  const snapA = (await mustOk("A", "POST", `/v1/vms/${vmA}/snapshot`, { name: `snap-${SECRET}` })).snapshotId as string | undefined;
  const own = { A: { vm: vmA, snap: snapA ?? "snap-none" }, B: { vm: vmB, snap: "snap-none-b" } };

  const doc = jsonOf((await request(agent, srv.url, { method: "GET", path: "/openapi.json" })) as Answer) as {
    paths: Record<string, Record<string, { requestBody?: { content?: Record<string, { schema?: Schema }> }; parameters?: Array<{ in: string; name: string }>; responses: Record<string, unknown> }>>;
    components: { schemas: Record<string, Schema> };
  };
  const ops: Operation[] = [];
  for (const [p, methods] of Object.entries(doc.paths)) {
    for (const [m, op] of Object.entries(methods)) {
      const content = op.requestBody?.content ?? {};
      ops.push({
        method: m.toUpperCase(),
        path: p,
        ws: "101" in op.responses,
        body: content["application/json"]?.schema,
        contentTypes: Object.keys(content),
        query: (op.parameters ?? []).filter((x) => x.in === "query").map((x) => x.name),
      });
    }
  }
  const resolve = (s: Schema | undefined): Schema | undefined => (s?.$ref ? doc.components.schemas[s.$ref.split("/").pop() as string] : s);
  const gen = (s0: Schema | undefined, depth = 0): unknown => {
    const s = resolve(s0);
    if (!s || depth > 6) return rng.pick(WEIRD);
    if (s.enum) return rng.pick(s.enum);
    if (s.oneOf ?? s.anyOf) return gen(rng.pick((s.oneOf ?? s.anyOf) as Schema[]), depth + 1);
    const type = Array.isArray(s.type) ? rng.pick(s.type) : s.type;
    switch (type) {
      case "object": {
        const o: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(s.properties ?? {})) if (s.required?.includes(k) || rng.chance(0.4)) o[k] = gen(v, depth + 1);
        return o;
      }
      case "array":
        return Array.from({ length: rng.int(3) }, () => gen(s.items, depth + 1));
      case "integer":
      case "number": {
        const lo = s.minimum ?? 0;
        const hi = Math.min(s.maximum ?? lo + 100, lo + 100);
        return lo + rng.int(hi - lo + 1);
      }
      case "boolean":
        return rng.chance(0.5);
      case "null":
        return null;
      case "string":
        return s.pattern ? "root" : rng.str(Math.min(s.maxLength ?? 16, 16)) || "x";
      default:
        return rng.pick(WEIRD);
    }
  };
  /** A random field of a JSON value replaced by a value of the wrong type, or by something huge or deep. */
  const mutateValue = (v: unknown): unknown => {
    if (!v || typeof v !== "object" || rng.chance(0.15)) return rng.pick([...WEIRD, "y".repeat(1 << 20), { n: deepValue(50) }]);
    const o = (Array.isArray(v) ? [...v] : { ...v }) as Record<string, unknown>;
    const keys = Object.keys(o);
    const k = keys.length && rng.chance(0.8) ? rng.pick(keys) : rng.pick(["extra", "__proto__", "constructor", "command", "name", "content"]);
    o[k] = rng.chance(0.5) ? mutateValue(o[k]) : rng.pick(WEIRD);
    return o;
  };

  type Who = "A" | "B" | "anon";
  const garbageId = () => rng.pick(["", "x", "vm00000000000000000000", "%00", "..", "%2e%2e", "a".repeat(5000), encodeURIComponent(rng.str(20)), "%ff%fe", "snap-" + rng.int(1000), "%E2%98%83"]);
  const fill = (op: Operation, who: Who): { path: string; guardedOwn: boolean } => {
    const mine = who === "anon" ? own.A : own[who];
    const theirs = who === "B" ? own.A : own.B;
    let guardedOwn = false;
    const route = `${op.method} ${op.path}`;
    const path = op.path.replace(/\{(\w+)\}/g, (_m, name: string) => {
      const r = rng.next();
      if (name === "vm_id") {
        if (r < 0.5 && !GUARDED.test(route)) {
          guardedOwn = true;
          return mine.vm;
        }
        return r < 0.8 ? theirs.vm : garbageId();
      }
      if (name === "snapshot_id") {
        if (r < 0.4 && !GUARDED.test(route)) return mine.snap;
        return r < 0.8 ? theirs.snap : garbageId();
      }
      if (name === "filepath") {
        if (r < 0.6) return encodeURIComponent(rng.pick(["/tmp/fuzz/" + rng.str(12).replace(/\.\./g, "_"), "/tmp/fuzz-secret.txt", "/tmp", "/root/.secret", "/etc/hostname", "/tmp/fuzz"]));
        return rng.pick(["tmp/x", "%2F..%2F..%2Fetc%2Fshadow", "..%2f", "%2Ftmp%2F%00x", "%2F" + "a".repeat(5000), encodeURIComponent("/tmp/" + rng.str(30)), "%2F", "%2Fproc%2Fself%2Fenviron"]);
      }
      if (name === "session_id") return rng.pick(["pty-1", "pty-0", "x", "../../", "a".repeat(100), "%00", encodeURIComponent(rng.str(10))]);
      return garbageId();
    });
    return { path, guardedOwn };
  };
  const authHeader = (who: Who): Record<string, string> => {
    if (who !== "anon") return { authorization: `Bearer ${keyOf[who]}` };
    return rng.pick<Record<string, string>>([{}, { authorization: "Bearer nope" }, { authorization: `Basic ${Buffer.from("a:b").toString("base64")}` }, { authorization: `Bearer ${srv.a.key}x` }, { authorization: `Bearer ${srv.a.key.toUpperCase()}` }, { authorization: "Bearer " + "k".repeat(9000) }, { authorization: "" }, { authorization: `bearer  ${srv.b.key.slice(0, -1)}` }]);
  };
  const userHeader = (): Record<string, string> =>
    rng.chance(0.7) ? {} : { "x-freestyle-vm-linux-user-id": rng.pick(["root", "nobody", "nosuchuser", "ROOT", "../etc", "a".repeat(40), "", "r$", "0", "\u00e9"]) };

  /** The secret in anything tenant B or an anonymous caller received is a cross-tenant leak. */
  const leakCheck = (who: Who, what: string, bytes: Buffer, headers?: http.IncomingHttpHeaders) => {
    if (who === "A") return;
    if (bytes.includes(SECRET) || (headers && JSON.stringify(headers).includes(SECRET))) {
      crossTenant++;
      fail(`cross-tenant: ${who} saw A's secret in ${what}: ${bytes.toString("utf8").slice(0, 300)}`);
    }
  };
  const tally = (k: string) => {
    outcomes[k] = (outcomes[k] ?? 0) + 1;
  };
  const judge = (who: Who, what: string, r: Answer | { error: string; ms: number }, guardedOwn: boolean, route: string) => {
    if ("error" in r) {
      tally("no answer");
      fail(`${what}: ${r.error}`);
      return;
    }
    tally(String(r.status));
    if (r.status >= 500) fiveXx++;
    if (r.aborted) fail(`${what}: the answer (${r.status}) broke off`);
    const bad = checkAnswer(r);
    if (bad) {
      if (bad.startsWith("undocumented")) undocumented5xx++;
      const id = requestIdOf(r);
      fail(`${what}: ${bad}${id ? `\n    server log: ${srv.logLines(id)}` : ""}`);
    }
    leakCheck(who, what, r.body, r.headers);
    if (GUARDED.test(route) && !guardedOwn && r.status < 300 && who !== "anon") {
      // A guarded call on another tenant's id or garbage must be refused.
      fail(`${what}: a guarded call succeeded (${r.status}): ${r.body.toString().slice(0, 300)}`);
    }
  };

  const wsBase = srv.url.replace(/^http/, "ws");
  const wsMessage = (ws: WebSocket, pty: boolean) => {
    const choice = rng.int(10);
    if (choice < 3) ws.send(JSON.stringify(pty ? { type: "resize", cols: 1 + rng.int(300), rows: 1 + rng.int(100) } : { type: rng.pick(["eof", "kill"]), signal: rng.pick(["SIGINT", "SIGTERM", "SIGKILL", "SIGHUP", "SIGNOPE", 9]) }));
    else if (choice < 5) ws.send(JSON.stringify(mutateValue(pty ? { type: "resize", cols: 80, rows: 24 } : { type: "kill", signal: "SIGTERM" })));
    else if (choice < 6) ws.send(rng.pick(["{", "null", "[]", "", '{"type":"signal"}', deepValue(20000)]));
    else if (choice < 7) ws.send(Buffer.from(rng.bytes(rng.int(4096))));
    else if (choice < 8) ws.send("z".repeat(1 + rng.int(2 << 20)));
    else ws.send(Buffer.from("echo hi\n"));
  };
  const wsCaseFor = async (op: Operation, who: Who, path: string): Promise<WsOutcome> => {
    const pty = op.path.includes("/pty");
    const q = new URLSearchParams();
    for (const name of op.query) {
      if (!rng.chance(0.7)) continue;
      if (name === "cols" || name === "rows") q.set(name, rng.pick(["80", "24", "0", "-1", "99999", "x", "1.5", ""]));
      else if (name === "command" || name === "exec") q.set(name, rng.pick(["cat", "echo hi", "sh", "true", "sleep 3", rng.str(20), "x".repeat(10000)]));
      else if (name === "timeoutMs") q.set(name, rng.pick(["1000", "0", "-5", "abc", "99999999999"]));
      else q.set(name, rng.pick(["pty-1", "mine", "", "../x"]));
    }
    if (!pty && !q.has("command") && rng.chance(0.8)) q.set("command", "cat");
    return wsCase(`${wsBase}${path}?${q.toString()}`, { ...authHeader(who), ...userHeader() }, (ws) => {
      for (let i = rng.int(5); i > 0; i--) wsMessage(ws, pty);
      if (rng.chance(0.3)) ws.close(rng.pick([1000, 1001, 4000, 3000]));
    }, 100 + rng.int(800), 60_000);
  };

  const httpCase = async (op: Operation, who: Who, path: string, guardedOwn: boolean, sent: { body?: Buffer | string }): Promise<Answer | { error: string; ms: number }> => {
    const route = `${op.method} ${op.path}`;
    const headers: Record<string, string> = { ...authHeader(who), ...userHeader() };
    let body: Buffer | string | undefined;
    const isRaw = op.contentTypes.includes("application/octet-stream") || (op.method === "PUT" && op.path.includes("files-raw"));
    if (isRaw) {
      headers["content-type"] = rng.pick(["application/octet-stream", "text/plain", "application/json"]);
      body = rng.bytes(rng.int(rng.chance(0.05) ? 4 << 20 : 4096));
    } else if (op.body || rng.chance(0.1)) {
      let value: unknown = gen(op.body);
      if (rng.chance(0.6)) value = mutateValue(value);
      const creates = route === "POST /v1/vms" || route === "POST /v5/vms";
      if (creates && who !== "anon") {
        // Never a valid creation: a wrong type in a field the server must check.
        value = value && typeof value === "object" && !Array.isArray(value) ? { ...value, idleTimeoutSeconds: rng.pick(["soon", -5, 1.5, {}, [], 1e12]) } : value;
      }
      if ((route === "POST /v1/vms/{vm_id}/exec-await" || route === "POST /v5/vms/{vm_id}/exec-await") && guardedOwn && value && typeof value === "object" && !Array.isArray(value)) {
        const v = value as Record<string, unknown>;
        if (typeof v.command === "string" && rng.chance(0.7)) v.command = rng.pick(["echo hi", "true", "cat /tmp/fuzz-secret.txt", "ls /tmp", "exit 7", "id -u"]);
        if (v.timeoutMs === undefined || typeof v.timeoutMs === "number") v.timeoutMs = 1 + rng.int(5000);
      }
      let text = JSON.stringify(value) ?? "null";
      const m = rng.int(20);
      // Truncated, never to nothing: an empty body is a valid create (`{}`), which would make a VM.
      if (m === 0) text = text.slice(0, Math.max(1, rng.int(text.length)));
      else if (m === 1) text = deepValue(rng.pick([100, 10000, 200000]));
      else if (m === 2) text = `{"a":${"[".repeat(5000)}`;
      else if (m === 3) text = "\u0000\ufffd{";
      body = text;
      headers["content-type"] = rng.chance(0.85) ? "application/json" : rng.pick(["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset=latin1", ""]);
      // Invalid UTF-8 (decoded as U+FFFD, so on POST /v1/vms it also carries a field that must fail).
      if (m === 4) body = Buffer.concat([Buffer.from(`{${creates ? '"idleTimeoutSeconds":"soon",' : ""}"name":"`), Buffer.from([0xff, 0xfe, 0xc0, 0x80]), Buffer.from('"}')]);
      // Large (12 MiB, within the 64 MiB limit) and, rarely, over the limit; on POST /v1/vms with a
      // field that must fail, so neither creates a VM.
      if (m === 5 && rng.chance(0.2)) body = `{${creates ? '"idleTimeoutSeconds":"soon",' : ""}"content":"${rng.chance(0.1) ? oversize() : "o".repeat(12 << 20)}"}`;
    }
    if (headers["content-type"] === "") delete headers["content-type"];
    sent.body = body;
    return request(agent, srv.url, { method: op.method, path, headers, body, timeoutMs: 90_000 });
  };

  let cases = 0;
  let wsCases = 0;
  const deadline = t0 + opts.durationMs;
  let lastLog = Date.now();
  opts.log(`api fuzz: ${ops.length} routes; A ${vmA} (snapshot ${snapA}), B ${vmB}`);
  await pool(
    opts.concurrency,
    () => cases < opts.requests && Date.now() < deadline && !srv.dead && failed.total < 200,
    async () => {
      cases++;
      const op = rng.pick(ops);
      const r = rng.next();
      const who: Who = r < 0.4 ? "A" : r < 0.85 ? "B" : "anon";
      const { path, guardedOwn } = fill(op, who);
      const what = `${who} ${op.method} ${path.slice(0, 160)}`;
      if (op.ws) {
        wsCases++;
        const o = await wsCaseFor(op, who, path);
        tally(o.refused ? `ws ${o.refused.status}` : o.opened ? "ws opened" : "ws error");
        const bad = checkWs(o);
        if (bad) fail(`${what}: ${bad}`);
        if (o.refused && o.refused.status >= 500) fiveXx++;
        leakCheck(who, what, o.seen);
      } else {
        const sent: { body?: Buffer | string } = {};
        const answer = await httpCase(op, who, path, guardedOwn, sent);
        judge(who, `${what}${sent.body !== undefined && GUARDED.test(`${op.method} ${op.path}`) ? ` body ${String(sent.body).slice(0, 200)}` : ""}`, answer, guardedOwn, `${op.method} ${op.path}`);
      }
      if (cases % 250 === 0) {
        const h = await request(agent, srv.url, { method: "GET", path: "/healthz", timeoutMs: 30_000 });
        if ("error" in h || h.status !== 200) fail(`healthz: ${"error" in h ? h.error : h.status}`);
      }
      if (Date.now() - lastLog > 10_000) {
        lastLog = Date.now();
        opts.log(`api fuzz: ${cases} requests (${wsCases} WebSocket), ${failed.total} failures, peak RSS ${mib(srv.peakRss)}, ${Math.round((Date.now() - t0) / 1000)} s`);
      }
    },
  );
  const crashes = srv.dead ? 1 : 0;
  if (srv.dead) fail(`${srv.dead}\n${srv.logTail.slice(-4000)}`);
  if (cases < opts.requests) fail(`only ${cases} of ${opts.requests} requests within the time limit`);

  // The tenants still have exactly their own resources: nothing created, nothing lost.
  const leaks: string[] = [];
  if (!srv.dead) {
    for (const who of ["A", "B"] as const) {
      const list = (await mustOk(who, "GET", "/v1/vms")).vms as Array<{ id: string }> | undefined;
      const ids = (list ?? []).map((v) => v.id);
      if (!ids.includes(own[who].vm)) leaks.push(`${who}'s VM ${own[who].vm} is gone`);
      for (const id of ids) if (id !== own[who].vm) {
        leaks.push(`${who} has an extra VM ${id}`);
        await request(agent, srv.url, { method: "DELETE", path: `/v1/vms/${id}`, headers: { authorization: `Bearer ${keyOf[who]}` }, timeoutMs: 120_000 });
      }
      const ok = await mustOk(who, "POST", `/v1/vms/${own[who].vm}/exec-await`, { command: "echo alive" }).catch((e: Error) => ({ stdout: e.message }));
      if (ok.stdout !== "alive\n") leaks.push(`${who}'s VM does not answer after the run: ${String(ok.stdout).slice(0, 200)}`);
    }
    for (const l of leaks) fail(`state: ${l}`);
    for (const who of ["A", "B"] as const) await request(agent, srv.url, { method: "DELETE", path: `/v1/vms/${own[who].vm}`, headers: { authorization: `Bearer ${keyOf[who]}` }, timeoutMs: 120_000 });
    if (snapA) await request(agent, srv.url, { method: "DELETE", path: `/v1/vms/snapshots/${snapA}`, headers: { authorization: `Bearer ${srv.a.key}` }, timeoutMs: 120_000 });
  }
  agent.destroy();
  await sleep(100);
  return { fuzzer: "api", seed: opts.seed, cases, wsCases, routes: ops.length, crashes, fiveXx, undocumented5xx, crossTenant, failures: failed.list(), outcomes, leaks, peakRssBytes: srv.peakRss, durationMs: Date.now() - t0 };
}

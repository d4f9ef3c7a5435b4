/**
 * The agent-protocol fuzzer: a VM whose agent socket root has taken over with the fuzzing agent
 * (vm-agent.ts), driven through the real API server with exec, files, PTY and exec-stream calls,
 * many in flight. Every call must end within its deadline with a valid answer or a coded error
 * (5xx only as 503 SERVICE_UNAVAILABLE with a reason); the server must live; a second VM must keep
 * working; afterwards the server's fds and sockets and the VMs' host resources are back to baseline.
 * Cases are frames the fuzzing agent sent.
 */
import http from "node:http";
import { countResources } from "@capsule/engine/test-support";
import { checkAnswer, Failures, requestIdOf, checkWs, jsonOf, mib, pool, request, Rng, sleep, wsCase, type Answer, type ServerProc } from "./common.js";
import { FUZZ_REPORT_COMMAND, VM_AGENT_SOURCE } from "./vm-agent.js";

export interface AgentFuzzResult {
  fuzzer: "agent";
  seed: number;
  cases: number;
  hostCalls: number;
  connections: number;
  crashes: number;
  failures: string[];
  outcomes: Record<string, number>;
  mutations: Record<string, number>;
  leaks: string[];
  baseline: { fds: number; sockets: number; rssBytes: number; resources: Record<string, number> };
  after: { fds: number; sockets: number; rssBytes: number; resources: Record<string, number> };
  peakRssBytes: number;
  durationMs: number;
}

/** How long one call may take: the agent's reply deadline (30 s) plus the exec grace and slack. */
const CALL_DEADLINE_MS = 75_000;

export async function agentFuzz(srv: ServerProc, opts: { frames: number; seed: number; durationMs: number; concurrency: number; log: (s: string) => void }): Promise<AgentFuzzResult> {
  const t0 = Date.now();
  const rng = new Rng(opts.seed);
  const agent = new http.Agent({ keepAlive: false, maxSockets: opts.concurrency + 2 });
  const failed = new Failures();
  const outcomes: Record<string, number> = {};
  const fail = (s: string) => failed.add(s);
  const auth = { authorization: `Bearer ${srv.a.key}` };
  const call = (method: string, path: string, body?: unknown, timeoutMs = CALL_DEADLINE_MS) =>
    request(agent, srv.url, { method, path, headers: body === undefined ? auth : { ...auth, "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body), timeoutMs });
  const mustOk = async (method: string, path: string, body?: unknown): Promise<Record<string, unknown>> => {
    const r = await call(method, path, body, 180_000);
    if ("error" in r || r.status !== 200) throw new Error(`${method} ${path}: ${"error" in r ? r.error : `${r.status} ${r.body.toString().slice(0, 500)}`}`);
    return jsonOf(r) as Record<string, unknown>;
  };

  const target = (await mustOk("POST", "/v1/vms", { idleTimeoutSeconds: null, name: "fuzz-agent-target" })).id as string;
  const bystander = (await mustOk("POST", "/v1/vms", { idleTimeoutSeconds: null, name: "fuzz-agent-bystander" })).id as string;
  await mustOk("PUT", `/v1/vms/${target}/files/${encodeURIComponent("/tmp/fuzz-agent.js")}`, { content: VM_AGENT_SOURCE, encoding: "utf8" });
  const launched = await mustOk("POST", `/v1/vms/${target}/exec-await`, {
    command: [
      `FUZZ_SEED=${opts.seed} setsid /.capsule/lib/ld-linux-x86-64.so.2 --library-path /.capsule/lib /.capsule/bin/node /tmp/fuzz-agent.js </dev/null >/tmp/fuzz-agent.log 2>&1 &`,
      "for i in $(seq 200); do [ -e /tmp/fuzz-agent.ready ] && exit 0; sleep 0.05; done",
      "cat /tmp/fuzz-agent.log; exit 1",
    ].join("\n"),
  });
  if (launched.statusCode !== 0) throw new Error(`the fuzzing agent did not start: ${JSON.stringify(launched)}`);

  const report = async (): Promise<{ frames: number; conns: number; errors: number; mutations: Record<string, number> } | undefined> => {
    for (let i = 0; i < 3; i++) {
      const r = await call("POST", `/v1/vms/${target}/exec-await`, { command: FUZZ_REPORT_COMMAND });
      if (!("error" in r) && r.status === 200) {
        try {
          return JSON.parse(String((jsonOf(r) as { stdout?: string }).stdout)) as { frames: number; conns: number; errors: number; mutations: Record<string, number> };
        } catch {
          /* retry */
        }
      }
      await sleep(200);
    }
    return undefined;
  };

  // Baseline: both VMs up, the fuzzing agent listening, no call in flight.
  if (!(await report())) throw new Error("the fuzzing agent does not answer its report");
  agent.destroy();
  await sleep(500);
  const base = srv.sample();
  if (!base) throw new Error(srv.dead ?? "cannot read the server's /proc");
  const baseRes = await countResources(srv.dataDir, [target, bystander]);
  opts.log(`agent fuzz: target ${target}, bystander ${bystander}; baseline ${base.fds} fds, ${base.sockets} sockets, RSS ${mib(base.rssBytes)}`);

  let frames = 0;
  let connections = 0;
  let mutations: Record<string, number> = {};
  let hostCalls = 0;
  let lastReport = Date.now();
  let reporting: Promise<void> | undefined;
  const deadline = t0 + opts.durationMs;
  const tally = (k: string) => {
    outcomes[k] = (outcomes[k] ?? 0) + 1;
  };
  const judge = (what: string, r: Answer | { error: string; ms: number }) => {
    if ("error" in r) {
      fail(`${what}: ${r.error}`);
      tally("no answer");
      return;
    }
    if (r.aborted) {
      // A streamed download the broken agent cut short: the status was sent, so the server can
      // only break the connection. Anything else cut short is a failure.
      tally(`${r.status} aborted`);
      if (!(what === "files-raw get" && r.status === 200)) fail(`${what}: the answer (${r.status}) broke off`);
      return;
    }
    const bad = checkAnswer(r);
    if (bad) {
      const id = requestIdOf(r);
      fail(`${what}: ${bad}${id ? `\n    server log: ${srv.logLines(id)}` : ""}`);
    }
    const code = r.status >= 400 ? `${r.status} ${String((jsonOf(r) as { reason?: string; code?: string } | undefined)?.reason ?? (jsonOf(r) as { code?: string } | undefined)?.code)}` : String(r.status);
    tally(code);
  };
  const wsUrl = (p: string) => `${srv.url.replace(/^http/, "ws")}${p}`;

  const ops: Array<[string, () => Promise<void>]> = [
    ["exec-await", async () => judge("exec-await", await call("POST", `/v1/vms/${target}/exec-await`, { command: rng.pick(["echo hi", "true", "cat /etc/hostname", "exit 3"]), ...(rng.chance(0.3) ? { timeoutMs: 1 + rng.int(3000) } : {}) }))],
    ["files get", async () => judge("files get", await call("GET", `/v1/vms/${target}/files/${encodeURIComponent(rng.pick(["/tmp/x", "/tmp", "/etc/hostname", "/root"]))}`))],
    ["files-raw get", async () => judge("files-raw get", await call("GET", `/v1/vms/${target}/files-raw/%2Ftmp%2Fx`))],
    ["files put", async () => judge("files put", await call("PUT", `/v1/vms/${target}/files/%2Ftmp%2Ffuzz-w`, { content: "x".repeat(rng.int(2000)), encoding: "utf8" }))],
    [
      "files-raw put",
      async () => judge("files-raw put", await request(agent, srv.url, { method: "PUT", path: `/v1/vms/${target}/files-raw/%2Ftmp%2Ffuzz-r`, headers: { ...auth, "content-type": "application/octet-stream" }, body: rng.bytes(rng.int(70_000)), timeoutMs: CALL_DEADLINE_MS })),
    ],
    ["pty list", async () => judge("pty list", await call("GET", `/v1/vms/${target}/pty/sessions`))],
    ["pty close", async () => judge("pty close", await call("DELETE", `/v1/vms/${target}/pty/sessions/pty-${rng.int(3)}`))],
    [
      "pty open",
      async () => {
        const o = await wsCase(wsUrl(`/v1/vms/${target}/pty?cols=80&rows=24`), auth, (ws) => ws.send(JSON.stringify({ type: "resize", cols: 100, rows: 30 })), 300 + rng.int(1500), CALL_DEADLINE_MS);
        const bad = checkWs(o);
        if (bad) fail(`pty open: ${bad}`);
        tally(o.refused ? `ws ${o.refused.status}` : `ws open ${o.closeCode ?? "-"}`);
      },
    ],
    [
      "pty attach",
      async () => {
        const o = await wsCase(wsUrl(`/v1/vms/${target}/pty/sessions/pty-${rng.int(3)}?cols=80&rows=24`), auth, (ws) => ws.send(Buffer.from("ls\n")), 300 + rng.int(1500), CALL_DEADLINE_MS);
        const bad = checkWs(o);
        if (bad) fail(`pty attach: ${bad}`);
        tally(o.refused ? `ws ${o.refused.status}` : `ws open ${o.closeCode ?? "-"}`);
      },
    ],
    [
      "exec-stream",
      async () => {
        const o = await wsCase(
          wsUrl(`/v1/vms/${target}/exec-stream?command=${encodeURIComponent("cat")}`),
          auth,
          (ws) => {
            ws.send(Buffer.from("input"));
            ws.send(JSON.stringify({ type: rng.pick(["eof", "kill"]) }));
          },
          300 + rng.int(1500),
          CALL_DEADLINE_MS,
        );
        const bad = checkWs(o);
        if (bad) fail(`exec-stream: ${bad}`);
        tally(o.refused ? `ws ${o.refused.status}` : `ws open ${o.closeCode ?? "-"}`);
      },
    ],
  ];

  const refresh = async () => {
    const r = await report();
    if (!r) {
      fail("the fuzzing agent's report did not come back");
      return;
    }
    frames = r.frames;
    connections = r.conns;
    mutations = r.mutations;
    // The bystander VM keeps working, and the server still answers its health check.
    const ok = await call("POST", `/v1/vms/${bystander}/exec-await`, { command: "echo fine" });
    if ("error" in ok || ok.status !== 200 || (jsonOf(ok) as { stdout?: string }).stdout !== "fine\n") fail(`the bystander VM stopped working: ${"error" in ok ? ok.error : ok.body.toString().slice(0, 300)}`);
    opts.log(`agent fuzz: ${frames} frames, ${connections} connections, ${hostCalls} host calls, ${failed.total} failures, ${Math.round((Date.now() - t0) / 1000)} s`);
  };

  await pool(
    opts.concurrency,
    () => frames < opts.frames && Date.now() < deadline && !srv.dead && failed.total < 200,
    async () => {
      const [, op] = rng.pick(ops);
      hostCalls++;
      await op();
      if (Date.now() - lastReport > 5_000 && !reporting) {
        lastReport = Date.now();
        reporting = refresh().finally(() => {
          reporting = undefined;
        });
      }
      await reporting;
    },
  );
  await refresh();
  const crashes = srv.dead ? 1 : 0;
  if (srv.dead) fail(`${srv.dead}\n${srv.logTail.slice(-4000)}`);
  if (frames < opts.frames) fail(`only ${frames} of ${opts.frames} frames within the time limit`);

  // Back to baseline: no HTTP connection of ours, every agent connection closed (a lingering
  // fuzzing connection ends within 40 s), the same fds, sockets and VM resources.
  agent.destroy();
  const leaks: string[] = [];
  let now = srv.sample();
  for (let i = 0; i < 120 && now && (now.fds > base.fds || now.sockets > base.sockets); i++) {
    await sleep(500);
    now = srv.sample();
  }
  const afterRes = await countResources(srv.dataDir, [target, bystander]);
  if (!now) leaks.push("the server is gone");
  else {
    if (now.fds > base.fds) leaks.push(`fds ${base.fds} -> ${now.fds}`);
    if (now.sockets > base.sockets) leaks.push(`sockets ${base.sockets} -> ${now.sockets}`);
  }
  for (const [k, v] of Object.entries(baseRes)) if (afterRes[k] !== v) leaks.push(`${k} ${v} -> ${afterRes[k]}`);
  for (const l of leaks) fail(`leak: ${l}`);

  for (const id of [target, bystander]) await call("DELETE", `/v1/vms/${id}`, undefined, 120_000);
  agent.destroy();
  return {
    fuzzer: "agent",
    seed: opts.seed,
    cases: frames,
    hostCalls,
    connections,
    crashes,
    failures: failed.list(),
    outcomes,
    mutations,
    leaks,
    baseline: { ...base, resources: baseRes },
    after: { ...(now ?? { fds: -1, sockets: -1, rssBytes: -1 }), resources: afterRes },
    peakRssBytes: srv.peakRss,
    durationMs: Date.now() - t0,
  };
}

import { createRoute } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { ExecResult as EngineExecResult } from "@capsule/engine";
import { LINUX_USER_HEADER, type App, type AppEnv, type Deps } from "../context.js";
import { ApiError, toApiError } from "../errors.js";
import { ExecRequest, ExecResult, LinuxUserHeader, MAX_EXEC_STDIN_BYTES, VmParams } from "../schemas.js";
import { bufferedExec } from "../guest/buffered-exec.js";
import { exitStatus } from "../guest/exit-status.js";
import { HEADERS_DEADLINE_MS, sleep, spacesThenJson } from "../guest/keepalive.js";
import { check, jsonBody } from "../validate.js";
import { account, errors, json, linuxUser, security } from "./common.js";


type ExecAnswer = { stdout: string | null; stderr: string | null; statusCode: number | null } & Record<string, unknown>;

/**
 * Registered as a plain route (documented through the registry): a long exec answers with a raw
 * stream, which `app.openapi`'s typed handlers cannot return.
 */
export function register(app: App, { svc, metrics, limits }: Deps): void {
  app.openAPIRegistry.registerPath(
    createRoute({
      method: "post",
      path: "/v1/vms/{vm_id}/exec-await",
      summary: "Run a command and wait for it",
      description: [
        "Runs `command` through `/bin/sh -c` as root, or as the `X-Freestyle-Vm-Linux-User-Id` user, and answers `{stdout, stderr, statusCode}`: HTTP 200 even for a non-zero exit (a signal gives 128+n).",
        "`timeoutMs` kills the command's process group: 408 EXEC_TIMED_OUT. `timeoutMs: null` means no timeout.",
        `Capsule extensions (the freestyle 0.1 client never sends them; \`/v5\` has the same two): \`env\` adds variables to the command's environment (shell variable names); \`stdin\` (base64, at most ${MAX_EXEC_STDIN_BYTES} bytes decoded) is written to the command's input, then closed. Without \`stdin\` the command's input is at EOF.`,
        `An exec with no timeout or one over ${HEADERS_DEADLINE_MS / 1000} s that is still running after ${limits.execKeepaliveAfterMs / 1000} s gets its 200 headers at once and a space every ${limits.execKeepaliveEveryMs / 1000} s until the JSON follows, because the client's fetch gives up after 300 s without headers. In that mode a timeout is reported in the 200 body: \`{statusCode: null, timedOut: true, code: "EXEC_TIMED_OUT", message}\`.`,
        `Output past ${limits.maxExecOutputBytes} bytes per stream is dropped, and the answer then carries \`truncated: true\`.`,
        "A client that hangs up before the answer ends its command (SIGKILL to its process group).",
        "A suspended VM is woken first.",
        "An account may run a limited number of execs (exec-await and exec-stream) at once: one more answers 429 `SERVICE_UNAVAILABLE` with `reason: EXEC_CONCURRENCY` (retry when one ends).",
      ].join("\n\n"),
      security,
      request: { params: VmParams, headers: LinuxUserHeader, body: { content: { "application/json": { schema: ExecRequest } }, required: true } },
      responses: { 200: json(ExecResult), ...errors(400, 404, 408, 429, 503) },
    }),
  );
  app.post("/v1/vms/:vm_id/exec-await", async (c: Context<AppEnv>) => {
    const vm_id = c.req.param("vm_id") ?? "";
    check(LinuxUserHeader, { [LINUX_USER_HEADER]: c.req.header(LINUX_USER_HEADER) }, "VALIDATION_ERROR", "header");
    const body = check(ExecRequest, await jsonBody(c, "VALIDATION_ERROR"), "VALIDATION_ERROR", "body");
    if (body.terminal) throw new ApiError("BAD_REQUEST", "named terminals are not supported by Capsule; omit `terminal`");
    const user = linuxUser(c);
    // The account's concurrent-exec slot (429 over the cap), held until the command's answer settles.
    const slot = svc.quotas.acquireExec(account(c));
    let started = false; // refusals before the exec (404, VM_NOT_RUNNING) are not exec outcomes
    // Aborted by the HTTP server when the client's connection closes before the answer is sent.
    const signal = c.req.raw.signal;
    const run: Promise<ExecAnswer> = svc.gateway
      .withVm(account(c), vm_id, {}, (_vm, guest) => {
        started = true;
        return bufferedExec(guest, {
          command: body.command,
          user,
          env: body.env,
          timeoutMs: body.timeoutMs ?? undefined,
          stdin: body.stdin === undefined ? undefined : Buffer.from(body.stdin, "base64"),
          maxOutputBytes: limits.maxExecOutputBytes,
          signal,
        });
      })
      .then((r) => answer(r, body.timeoutMs))
      .finally(() => slot.release());
    run.then(
      (a) => metrics.execs.inc({ kind: "await", outcome: a.timedOut ? "timeout" : a.statusCode === 0 ? "ok" : "nonzero" }),
      () => started && metrics.execs.inc({ kind: "await", outcome: "error" }),
    );

    const mayOutliveHeaders = !body.timeoutMs || body.timeoutMs > HEADERS_DEADLINE_MS;
    const early = mayOutliveHeaders ? await Promise.race([run, sleep(limits.execKeepaliveAfterMs)]) : await run;
    if (early) {
      if (early.timedOut) throw new ApiError("EXEC_TIMED_OUT", String(early.message));
      return c.json(plain(early), 200);
    }
    return new Response(spacesThenJson(run, limits.execKeepaliveEveryMs, errorAnswer), { status: 200, headers: { "content-type": "application/json" } });
  });
}

function answer(r: EngineExecResult, timeoutMs: number | null | undefined): ExecAnswer {
  const base = { stdout: r.stdout, stderr: r.stderr, statusCode: exitStatus(r.exitCode, r.signal), ...(r.truncated ? { truncated: true } : {}) };
  if (!r.timedOut) return base;
  return { ...base, statusCode: null, timedOut: true, code: "EXEC_TIMED_OUT", message: `Command timed out after ${timeoutMs}ms` };
}

function plain(a: ExecAnswer): { stdout: string | null; stderr: string | null; statusCode: number | null; truncated?: true } {
  return { stdout: a.stdout, stderr: a.stderr, statusCode: a.statusCode, ...(a.truncated ? { truncated: true as const } : {}) };
}

/** A failure after the early headers, in the 200 body. */
function errorAnswer(err: unknown): ExecAnswer {
  return { stdout: null, stderr: null, statusCode: null, ...toApiError(err).body() };
}

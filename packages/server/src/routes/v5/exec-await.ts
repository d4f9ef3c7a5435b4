/**
 * `POST /v5/vms/{vm_id}/exec-await` as `freestyle@0.2.x` expects it: the user in the body
 * (`linuxUser`, default the uid-1000 account or root), `env`, base64 `stdin`, a 30 s default
 * timeout, and a timeout answered 200 with `statusCode: null`. Same gateway, exec quota and
 * output limit as `/v1`.
 * @module
 */
import { createRoute } from "@hono/zod-openapi";
import type { Context } from "hono";
import { DEFAULT_EXEC_TIMEOUT_MS, ExecRequest, ExecResult } from "@capsule/contract/v5";
import type { ExecResult as EngineExecResult } from "@capsule/engine";
import type { App, AppEnv, Deps } from "../../context.js";
import { toApiError } from "../../errors.js";
import { bufferedExec } from "../../guest/buffered-exec.js";
import { exitStatus } from "../../guest/exit-status.js";
import { HEADERS_DEADLINE_MS, sleep, spacesThenJson } from "../../guest/keepalive.js";
import { VmParams } from "../../schemas.js";
import { check, jsonBody } from "../../validate.js";
import { account, errors, json, security } from "../common.js";
import { defaultUser } from "./guest-exec.js";

/**
 * Past this timeout an exec may outlive undici's 300 s wait for response headers (the client's
 * fetch, which 0.2 gives no timeout of its own), so such execs get early headers and keep-alive
 * spaces, which the client's JSON.parse skips. Shorter ones answer plainly.
 */

type Answer = ExecResult & { code?: string; message?: string };

/** A plain route (documented through the registry): a long exec answers with a raw stream. */
export function register(app: App, { svc, metrics, limits }: Deps): void {
  app.openAPIRegistry.registerPath(
    createRoute({
      method: "post",
      path: "/v5/vms/{vm_id}/exec-await",
      summary: "Run a command and wait for it (v5)",
      description: [
        "Runs `command` through `/bin/sh -c` as `linuxUser`, or, without one, as the VM's uid-1000 account (root when it has none), with `env` added to the environment and `stdin` (base64) as its input. Answers 200 `{stdout, stderr, statusCode}` for any exit (128+n for signal n).",
        `\`timeoutMs\` defaults to ${DEFAULT_EXEC_TIMEOUT_MS}; a command killed by it answers 200 with \`statusCode: null\`.`,
        `An exec whose timeout is over ${HEADERS_DEADLINE_MS / 1000} s and that still runs after ${limits.execKeepaliveAfterMs / 1000} s gets its 200 headers at once and a space every ${limits.execKeepaliveEveryMs / 1000} s until the JSON follows; an error after that is reported in the 200 body as \`{statusCode: null, code, message}\`.`,
        `Output past ${limits.maxExecOutputBytes} bytes per stream is dropped (\`truncated: true\`). A client that hangs up ends its command. The account's concurrent-exec cap answers 429 SERVICE_UNAVAILABLE (\`reason: EXEC_CONCURRENCY\`).`,
      ].join("\n\n"),
      security,
      request: { params: VmParams, body: { content: { "application/json": { schema: ExecRequest } }, required: true } },
      responses: { 200: json(ExecResult), ...errors(400, 404, 429, 503) },
    }),
  );
  app.post("/v5/vms/:vm_id/exec-await", async (c: Context<AppEnv>) => {
    const vmId = c.req.param("vm_id") ?? "";
    const body = check(ExecRequest, await jsonBody(c, "VALIDATION_ERROR"), "VALIDATION_ERROR", "body");
    const timeoutMs = body.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
    const slot = svc.quotas.acquireExec(account(c));
    let started = false; // refusals before the exec (404, VM_NOT_RUNNING) are not exec outcomes
    const run: Promise<Answer> = svc.gateway
      .withVm(account(c), vmId, {}, async (_vm, guest) => {
        const user = body.linuxUser ?? (await defaultUser(guest));
        started = true;
        return bufferedExec(guest, {
          command: body.command,
          user,
          env: body.env,
          timeoutMs,
          stdin: body.stdin === undefined ? undefined : Buffer.from(body.stdin, "base64"),
          maxOutputBytes: limits.maxExecOutputBytes,
          signal: c.req.raw.signal,
        });
      })
      .then(answer)
      .finally(() => slot.release());
    run.then(
      (a) => metrics.execs.inc({ kind: "await", outcome: a.statusCode === null ? "timeout" : a.statusCode === 0 ? "ok" : "nonzero" }),
      () => started && metrics.execs.inc({ kind: "await", outcome: "error" }),
    );
    const early = timeoutMs > HEADERS_DEADLINE_MS ? await Promise.race([run, sleep(limits.execKeepaliveAfterMs)]) : await run;
    if (early) return c.json(early, 200);
    return new Response(spacesThenJson(run, limits.execKeepaliveEveryMs, errorAnswer), { status: 200, headers: { "content-type": "application/json" } });
  });
}

function answer(r: EngineExecResult): Answer {
  return { stdout: r.stdout, stderr: r.stderr, statusCode: r.timedOut ? null : exitStatus(r.exitCode, r.signal), ...(r.truncated ? { truncated: true } : {}) };
}

/** A failure after the early headers, in the 200 body (0.2 reads `code` and `message`). */
function errorAnswer(err: unknown): Answer {
  const { code, message } = toApiError(err).body();
  return { stdout: null, stderr: null, statusCode: null, code, message };
}

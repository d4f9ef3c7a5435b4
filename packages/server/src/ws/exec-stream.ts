/**
 * Capsule's streaming exec over a WebSocket (documented in the OpenAPI description of
 * `/v1/vms/{vm_id}/exec-stream`): one process with live pipes.
 *   client → server: first text {type:"start",command,cwd?,env?,user?,timeoutMs?} (the process
 *                    starts only then); binary = stdin; text {type:"eof"}; text {type:"kill",signal?}.
 *   server → client: text {type:"started",pid}; binary [1|2, ...bytes] for stdout|stderr;
 *                    text {type:"exit",exitCode,signal,timedOut} then close 1000;
 *                    text {type:"error",code,message} then close 1011.
 * Closing the socket kills the process. Stdin is flow-controlled: while the process does not take
 * it, the server stops reading the socket (`stdinGate`).
 */
import { parseSignalName, type GuestProcess } from "@capsule/engine";
import type { RawData, WebSocket } from "ws";
import type { Readable } from "node:stream";
import { toApiError } from "../errors.js";
import { exitStatus } from "../guest/exit-status.js";
import { Deferred, flowControl, stdinGate } from "./bridge.js";
import { EXEC_STREAM_TAG } from "@capsule/contract/wire";
import { ExecClientMessage, parseWsMessage, type ExecServerMessage } from "@capsule/contract/ws";

export const STDOUT = EXEC_STREAM_TAG.stdout;
export const STDERR = EXEC_STREAM_TAG.stderr;

export interface ExecBridgeOpts {
  onEnd: (outcome: "ok" | "nonzero" | "timeout" | "error") => void;
}

export function bridgeExec(proc: GuestProcess, opts: ExecBridgeOpts): { bind: (ws: WebSocket) => void; abort: () => void } {
  const out = new Deferred();
  let finished = false;
  const throttles: Array<() => void> = [];
  const forward = (stream: Readable, tag: number) =>
    stream.on("data", (chunk: Buffer) =>
      out.run((ws) => {
        if (ws.readyState !== ws.OPEN) return;
        ws.send(Buffer.concat([Buffer.from([tag]), chunk]), { binary: true });
        for (const t of throttles) t();
      }),
    );
  // The process may exit before reading its stdin; a write after that must not crash the server.
  proc.stdin.on("error", () => undefined);
  forward(proc.stdout, STDOUT);
  forward(proc.stderr, STDERR);
  out.run((ws) => ws.send(JSON.stringify({ type: "started", pid: proc.pid } satisfies ExecServerMessage)));

  // Output first, then the exit frame: wait for both pipes to end before announcing the exit.
  const drained = Promise.all([new Promise((r) => proc.stdout.once("end", r)), new Promise((r) => proc.stderr.once("end", r))]);
  proc.exited.then(
    async (e) => {
      await drained;
      finished = true;
      const exitCode = exitStatus(e.exitCode, e.signal);
      opts.onEnd(e.timedOut ? "timeout" : exitCode === 0 ? "ok" : "nonzero");
      out.run((ws) => {
        if (ws.readyState !== ws.OPEN) return;
        ws.send(JSON.stringify({ type: "exit", exitCode, signal: e.signal, timedOut: e.timedOut } satisfies ExecServerMessage));
        ws.close(1000, "exited");
      });
    },
    (err: unknown) => {
      finished = true;
      opts.onEnd("error");
      const e = toApiError(err);
      out.run((ws) => {
        if (ws.readyState !== ws.OPEN) return;
        ws.send(JSON.stringify({ type: "error", code: e.code, message: e.message } satisfies ExecServerMessage));
        ws.close(1011, "exec failed");
      });
    },
  );

  const bind = (ws: WebSocket) => {
    for (const s of [proc.stdout, proc.stderr]) throttles.push(flowControl(ws, () => s.pause(), () => s.resume()));
    const gate = stdinGate(ws);
    // Once the process is gone nothing takes stdin: read on, so close and control frames get through.
    proc.exited.then(gate.release, gate.release);
    ws.on("message", (data: RawData, isBinary: boolean) => {
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      if (isBinary) {
        if (proc.stdin.writableEnded || proc.stdin.destroyed || finished) return;
        gate.queued(buf.length);
        proc.stdin.write(buf, () => gate.taken(buf.length));
        return;
      }
      const msg = parseWsMessage(ExecClientMessage, buf.toString("utf8"));
      if (msg?.type === "eof") proc.stdin.end();
      else if (msg?.type === "kill") proc.kill(parseSignalName(msg.signal) ?? "SIGKILL");
    });
    ws.on("close", () => {
      if (!finished) proc.kill("SIGKILL");
    });
    out.bind(ws);
  };
  return { bind, abort: () => proc.kill("SIGKILL") };
}

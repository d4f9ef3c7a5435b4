/**
 * Bridges one PTY attachment (engine) to one WebSocket in the Freestyle PTY protocol: a
 * `sessionInfo` text frame first (on open), output as binary frames, binary frames in as stdin,
 * text frames in as `resize` / `signal` (a name in any case, SIG prefix optional; SIGINT is the
 * byte 0x03, so the line discipline signals the foreground group; SIGKILL kills the session),
 * `exited` then close 1000 when the process ends. The /v5 dialect (freestyle 0.2) differs only in
 * its `sessionInfo` (a number, slug and `created`, on attach too) and in answering an unknown
 * signal with an `error` frame where /v1 ignores it. A client close detaches: the session keeps running in the guest. Stdin is written in order,
 * one frame after the other, and flow-controlled (`stdinGate`): while the guest does not take it,
 * the server stops reading the socket.
 */
import { parseSignalName, type PtyAttachment } from "@capsule/engine";
import type { RawData, WebSocket } from "ws";
import type { Logger } from "pino";
import { exitStatus } from "../guest/exit-status.js";
import { Deferred, flowControl, stdinGate } from "./bridge.js";
import { PtyClientMessage, parseWsMessage, type PtyServerMessage } from "@capsule/contract/ws";
import type { PtyErrorV5, PtySessionInfoV5 } from "@capsule/contract/v5";
import { WS_SIGNALS } from "@capsule/contract/wire";

/** A client text frame (`resize` / `signal`), or undefined for anything else (ignored, as the client does). */
export function parseControl(text: string): PtyClientMessage | undefined {
  return parseWsMessage(PtyClientMessage, text);
}

export interface PtyBridgeOpts {
  /** The `sessionInfo` message sent first, if any (/v1: on a new session only; /v5: always). */
  sessionInfo?: PtyServerMessage | PtySessionInfoV5;
  /** Answer an unknown signal with an `error` frame (/v5) instead of ignoring it (/v1). */
  errorFrames?: boolean;
  log: Logger;
}

/** Wires the attachment now (so no output is lost) and returns `bind`, to call with the upgraded socket. */
export function bridgePty(att: PtyAttachment, opts: PtyBridgeOpts): { bind: (ws: WebSocket) => void; abort: () => void } {
  const out = new Deferred();
  let exited = false;
  let throttle: (() => void) | undefined;
  att.on("data", (b: Buffer) =>
    out.run((ws) => {
      if (ws.readyState !== ws.OPEN) return;
      ws.send(b, { binary: true });
      throttle?.();
    }),
  );
  att.on("exit", (code: number | null, signal: string | null) => {
    exited = true;
    const exitCode = exitStatus(code, signal);
    out.run((ws) => {
      if (ws.readyState !== ws.OPEN) return;
      ws.send(JSON.stringify({ type: "exited", exitCode } satisfies PtyServerMessage));
      ws.close(1000, "exited");
    });
  });
  att.on("close", () =>
    out.run((ws) => {
      // Lost the guest without an exit (VM stopped): close so the client tries to reattach.
      if (!exited && ws.readyState === ws.OPEN) ws.close(1011, "lost the VM's terminal");
    }),
  );

  const bind = (ws: WebSocket) => {
    throttle = flowControl(ws, () => att.pause(), () => att.resume());
    if (opts.sessionInfo) ws.send(JSON.stringify(opts.sessionInfo));
    const gate = stdinGate(ws);
    att.once("close", gate.release);
    // One write at a time: a frame is handed to the guest only after the one before it was taken.
    let writes = Promise.resolve();
    const write = (buf: Buffer) => {
      gate.queued(buf.length);
      writes = writes
        .then(() => att.write(buf))
        .catch((err: unknown) => opts.log.debug({ err }, "pty write failed"))
        .finally(() => gate.taken(buf.length));
    };
    ws.on("message", (data: RawData, isBinary: boolean) => {
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      if (isBinary) return write(buf);
      const ctl = parseControl(buf.toString("utf8"));
      if (!ctl) return; // unknown control frames are ignored, as the client does
      if (ctl.type === "resize") return att.resize(ctl.cols, ctl.rows);
      const signal = parseSignalName(ctl.signal);
      if (signal === "SIGINT") write(Buffer.from([0x03]));
      else if (signal) att.signal(signal);
      else if (opts.errorFrames) ws.send(JSON.stringify({ type: "error", message: `unknown signal ${JSON.stringify(ctl.signal)}: use ${WS_SIGNALS.map((n) => n.toLowerCase()).join(", ")}` } satisfies PtyErrorV5));
    });
    ws.on("close", () => {
      if (!exited) att.detach();
    });
    out.bind(ws);
  };
  return { bind, abort: () => att.detach() };
}

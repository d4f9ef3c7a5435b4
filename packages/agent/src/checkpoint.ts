import fs from "node:fs/promises";
import path from "node:path";
import { CKPT_RESUME_MARKER, DEFAULT_CKPT_DEAF_MS, type CkptPrepareRequest } from "@capsule/agent-protocol";
import { config } from "./config.js";
import { dropAllConnections, type Conn } from "./conn.js";
import { listenAgain, stopListening } from "./listener.js";
import { log } from "./log.js";
import { dropSpareSlot, prepareSpareSlot } from "./zygote.js";

/**
 * How often a deaf agent looks for the host's marker. gVisor gives the guest no event when a
 * checkpoint ends or a restore begins, so this poll is the re-listen latency's floor; each look
 * is one stat through the gofer, a few hundred a second for the checkpoint's duration only.
 */
const MARKER_POLL_MS = 2;

const markerPath = (): string => path.join(path.dirname(config.socketPath), CKPT_RESUME_MARKER);

let deaf = false;
/** The marker's removal after a wake, which runs while the agent already listens again. */
let markerRemoved: Promise<void> = Promise.resolve();

/**
 * `ckpt.prepare`: closes the listener and every other host connection, answers `ok` and closes
 * this one, so that nothing of the host's is left in the VM for runsc to refuse; then listens
 * again when the host's marker appears beside the socket (the checkpoint is over, or this is the
 * restored copy) or after `deafMs` on its own. PTY sessions, services and running commands go on.
 */
export async function prepareCheckpoint(conn: Conn, req: CkptPrepareRequest): Promise<void> {
  if (deaf) return conn.finishNow({ type: "ok" }); // accepted before the listener closed
  deaf = true;
  const since = performance.now();
  // A marker left by an earlier cycle would end this one at once.
  await markerRemoved;
  await fs.rm(markerPath(), { force: true });
  stopListening();
  dropAllConnections(conn);
  // The fork server's prepared slot holds FIFOs we opened for reading. Opened after a restore
  // and carried through the next checkpoint, such a FIFO comes back from that restore with no
  // reader counted: the command's open for writing blocks in gVisor's VFSPipe.Open for ever
  // (the spike's second-generation hang, docs/memory-snapshots-spike.md). So none is held across.
  dropSpareSlot();
  conn.finishNow({ type: "ok" });
  const waited = await waitForMarker(req.deafMs ?? DEFAULT_CKPT_DEAF_MS);
  deaf = false;
  // The host waits for the socket (a restored copy's first request does): the marker goes after.
  listenAgain();
  markerRemoved = fs.rm(markerPath(), { force: true }).catch(() => undefined);
  prepareSpareSlot();
  log(`checkpoint: listening again ${waited ? "on the host's marker" : "after the deaf limit"}, ${Math.round(performance.now() - since)} ms after ckpt.prepare`);
}

/** True once the marker exists; false when `limitMs` passed first. */
async function waitForMarker(limitMs: number): Promise<boolean> {
  const deadline = performance.now() + limitMs;
  const marker = markerPath();
  while (performance.now() < deadline) {
    try {
      await fs.access(marker);
      return true;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, MARKER_POLL_MS));
    }
  }
  return false;
}

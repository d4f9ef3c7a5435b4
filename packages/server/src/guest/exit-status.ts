/** The shell-convention status of a guest process: its exit code, or 128 + n for signal n. */
import os from "node:os";
import { statusFromExit } from "../shell.js";

/** Signal numbers (`os.constants.signals`), typed as a plain record. */
const SIGNALS: Record<string, number> = { ...os.constants.signals };

export function exitStatus(exitCode: number | null, signal: string | null): number | null {
  return statusFromExit(exitCode, signal, SIGNALS);
}

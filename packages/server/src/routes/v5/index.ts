/**
 * The `/v5` API (the `freestyle@0.2.x` client's), in registration order: served beside `/v1` over
 * the same services. Contract: `@capsule/contract/v5`.
 * @module
 */
import type { ApiErrorCode } from "@capsule/contract/errors";
import type { App, Deps } from "../../context.js";
import * as execAwait from "./exec-await.js";
import * as firewallRules from "./firewall-rules.js";
import * as fsOps from "./fs-ops.js";
import * as fsRead from "./fs-read.js";
import * as fsWrite from "./fs-write.js";
import * as snapshots from "./snapshots.js";
import * as unsupported from "./unsupported.js";
import * as uploads from "./uploads.js";
import * as vmUpdate from "./vm-update.js";
import * as ptySessions from "./pty-sessions.js";
import * as vmPause from "./vm-pause.js";
import * as vms from "./vms.js";

/** v5 routes whose raw body streams to the guest (app.ts exempts them from the JSON body limit). */
export function isV5StreamedBody(path: string): boolean {
  return fsWrite.V5_WRITE_PATH.test(path) || uploads.V5_UPLOAD_CHUNK_PATH.test(path);
}

export const V5_ROUTES: ReadonlyArray<(app: App, deps: Deps) => void> = [
  snapshots.register,
  vms.register,
  vmPause.register,
  ptySessions.register,
  execAwait.register,
  fsRead.register,
  fsWrite.register,
  fsOps.register,
  firewallRules.register,
  uploads.register,
  vmUpdate.register,
  unsupported.register,
];

/** The route's own code for invalid input on a v5 path (undefined: not one of these). */
export function v5BadRequestCode(method: string, path: string): ApiErrorCode | undefined {
  if (method === "POST" && path.replace(/\/+$/, "") === "/v5/vms") return "CREATE_VM_BAD_REQUEST";
  if (/^\/v5\/vms\/[^/]+\/fs\//.test(path)) return "FILES_BAD_REQUEST";
  return undefined;
}

import type { Context } from "hono";
import type { App, AppEnv, Deps } from "../context.js";
import { ApiError } from "../errors.js";
import { account } from "./common.js";

/**
 * Freestyle features Capsule does not have answer at once with a known code (BAD_REQUEST, status
 * 501) and a message naming the feature — never a hang or an unknown code, which would make the
 * client retry forever. VM-scoped ones check ownership first, so they answer 404 for others' VMs.
 */
const GLOBAL: Array<[method: string, path: string, feature: string]> = [
  ["*", "/v1/domains/*", "domains"],
  ["*", "/domains/*", "domains"],
  ["*", "/git/*", "git repositories"],
  ["*", "/identity/*", "identities"],
  ["*", "/v1/vpcs/*", "VPCs"],
  ["*", "/vpc/*", "VPCs"],
  ["*", "/observability/*", "the observability API"],
  ["*", "/auth/*", "background requests"],
  ["*", "/web/*", "web deployments"],
  ["*", "/execute/*", "serverless runs"],
];

const VM_SCOPED: Array<[method: string, path: string, feature: string]> = [
  ["POST", "/v1/vms/:vm_id/watch-files", "watch-files"],
  ["GET", "/v1/vms/:vm_id/terminals/*", "named terminals"],
  ["GET", "/v1/vms/:vm_id/terminals", "named terminals"],
  ["POST", "/v1/vms/:vm_id/resize", "resizing a VM"],
  ["GET", "/v1/vms/:vm_id/stats/stream", "VM stats streams"],
];

function unsupported(feature: string): ApiError {
  return new ApiError("BAD_REQUEST", `${feature} ${feature.endsWith("s") ? "are" : "is"} not supported by Capsule`, 501, { unsupported: true });
}

export function registerGlobal(app: App): void {
  for (const [method, path, feature] of GLOBAL) {
    const handler = (): never => {
      throw unsupported(feature);
    };
    if (method === "*") app.all(path, handler);
    else app.on(method, path, handler);
    if (path.endsWith("/*")) app.all(path.slice(0, -2), handler);
  }
}

export function registerVmScoped(app: App, { svc }: Deps): void {
  for (const [method, path, feature] of VM_SCOPED) {
    const handler = async (c: Context<AppEnv>): Promise<never> => {
      await svc.views.get(account(c), c.req.param("vm_id") ?? "");
      throw unsupported(feature);
    };
    if (method === "*") app.all(path, handler);
    else app.on(method, path, handler);
  }
}

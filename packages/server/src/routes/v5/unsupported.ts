/**
 * v5 calls Capsule does not serve yet answer at once with a known code (BAD_REQUEST, status 501,
 * `unsupported: true`) naming the feature, instead of a 404 `no route`. VM-scoped ones check
 * ownership first, so another account's VM is a 404.
 * @module
 */
import type { Context } from "hono";
import type { App, AppEnv, Deps } from "../../context.js";
import { ApiError } from "../../errors.js";
import { account } from "../common.js";

const VM_SCOPED: Array<[method: string, path: string, feature: string]> = [
];

const GLOBAL: Array<[path: string, feature: string]> = [
  ["/v5/firewall/*", "standalone firewall rules (rules are made with their VM, in its create's `firewall`)"],
  ["/v5/identities/*", "identities and identity tokens"],
  ["/v5/background-requests/*", "background requests"],
  ["/v5/vpcs/*", "VPCs"],
  ["/v5/vpc/*", "VPCs"],
  ["/v5/tunnels/*", "tunnels"],
  ["/v5/domains/*", "domains"],
  ["/v5/tls/*", "TLS rules"],
];

function unsupported(feature: string): ApiError {
  return new ApiError("BAD_REQUEST", `${feature} is not supported by Capsule yet`, 501, { unsupported: true });
}

export function register(app: App, { svc }: Deps): void {
  for (const [method, path, feature] of VM_SCOPED) {
    const handler = async (c: Context<AppEnv>): Promise<never> => {
      await svc.views.get(account(c), c.req.param("vm_id") ?? "");
      throw unsupported(feature);
    };
    if (method === "*") app.all(path, handler);
    else app.on(method, path, handler);
  }
  for (const [path, feature] of GLOBAL) {
    const handler = (): never => {
      throw unsupported(feature);
    };
    app.all(path, handler);
    app.all(path.slice(0, -2), handler);
  }
}

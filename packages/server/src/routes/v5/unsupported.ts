/**
 * v5 calls Capsule does not serve yet answer at once with a known code (BAD_REQUEST, status 501,
 * `unsupported: true`) naming the feature, instead of a 404 `no route`.
 * @module
 */
import type { App } from "../../context.js";
import { ApiError } from "../../errors.js";

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

/** A request field (or option) Capsule does not have, set: refused by name, not ignored. */
export function unsupportedField(feature: string): ApiError {
  return new ApiError("BAD_REQUEST", `${feature} ${feature.endsWith("s") ? "are" : "is"} not supported by Capsule yet; leave it out of the request`, 501, { unsupported: true });
}

/** 0.2's "never" for a seconds field: absent, null or -1. */
export function isNever(n: number | null | undefined): boolean {
  return n === undefined || n === null || n === -1;
}

export function register(app: App): void {
  for (const [path, feature] of GLOBAL) {
    const handler = (): never => {
      throw unsupported(feature);
    };
    app.all(path, handler);
    app.all(path.slice(0, -2), handler);
  }
}

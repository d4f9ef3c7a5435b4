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

/**
 * The header a 0.2 client built with `identityAccessToken` authenticates with instead of
 * `Authorization` (lower case, as Node's HTTP stack reports it).
 */
export const IDENTITY_TOKEN_HEADER = "x-freestyle-identity-access-token";

/**
 * The answer to a request that brings an identity token and no API key: Capsule has no
 * identities, so such a client is told so (a coded 501 its caller sees once: 0.2 retries
 * nothing but upload chunks and background polls) rather than that its key is missing.
 */
export function identityTokenRefusal(): ApiError {
  return new ApiError("BAD_REQUEST", "identity access tokens are not supported by Capsule yet; authenticate with an API key (Authorization: Bearer <key>)", 501, { unsupported: true });
}

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

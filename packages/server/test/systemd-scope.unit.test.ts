/** A request scoped to a Linux user defines services running as that user only. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ApiError } from "../src/errors.js";
import { checkScopedSpec, toServiceSpec } from "../src/services.js";

const create = (body: Record<string, unknown>, requestUser: string | undefined) => {
  const spec = toServiceSpec({ name: "web", mode: "service", exec: ["true"], ...body } as Parameters<typeof toServiceSpec>[0], requestUser);
  checkScopedSpec(spec, requestUser);
  return spec;
};

const refused = (fn: () => unknown, reason: RegExp) => assert.throws(fn, (err: unknown) => err instanceof ApiError && err.code === "VALIDATION_ERROR" && reason.test(err.message));

test("a scoped request cannot define a service as root or as another user, nor with another group", () => {
  assert.equal(create({}, "alice").user, "alice", "the request's user is the default");
  assert.equal(create({ user: "alice", group: "alice" }, "alice").group, "alice");
  refused(() => create({ user: "root" }, "alice"), /as alice defines services running as alice only, not root/);
  refused(() => create({ user: "bob" }, "alice"), /not bob/);
  refused(() => create({ group: "root" }, "alice"), /cannot set group "root"/);
});

test("an unscoped request (the key's whole VM) defines any user's service", () => {
  assert.equal(create({ user: "root" }, undefined).user, "root");
  assert.equal(create({ user: "bob", group: "staff" }, undefined).group, "staff");
  assert.equal(create({}, undefined).user, undefined, "root by default");
});

/** The declarative layers' parsing and hashing (builds/layers.ts), without sandboxes. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ApiError } from "../src/errors.js";
import { canonicalJson, layerHash, specLayers, templateLayer } from "../src/builds/layers.js";

function refused(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ApiError, String(err));
    return err;
  }
  assert.fail("it was accepted");
}

describe("build layers", () => {
  it("a spec's layers come innermost first, with the create's VM settings from the outermost", () => {
    const { layers, vm } = specLayers({ additionalFiles: { "/x": { content: "y" } }, name: "box", idleTimeoutSeconds: 60, snapshot: { aptDeps: ["jq"], snapshotId: "snap-1" } }, true);
    assert.deepEqual(layers.map((l) => [l.aptDeps, Object.keys(l.files), l.snapshotId]), [[["jq"], [], "snap-1"], [[], ["/x"], undefined]]);
    assert.deepEqual(vm, { name: "box", idleTimeoutSeconds: 60 });
  });

  it("the hash follows content, base and discriminator, not key order, sizing or skipCache", () => {
    const a = templateLayer({ aptDeps: ["jq"], additionalFiles: { "/a": { content: "1" }, "/b": { content: "2" } } }, false).layer;
    const b = templateLayer({ additionalFiles: { "/b": { content: "2" }, "/a": { content: "1" } }, aptDeps: ["jq"], memSizeGb: 4, skipCache: true }, false).layer;
    assert.equal(layerHash(a, undefined), layerHash(b, undefined));
    assert.notEqual(layerHash(a, undefined), layerHash(a, "snap-1"));
    assert.notEqual(layerHash(a, undefined), layerHash({ ...a, discriminator: "v2" }, undefined));
    assert.notEqual(layerHash(a, undefined), layerHash({ ...a, aptDeps: ["jq", "curl"] }, undefined));
    assert.equal(canonicalJson({ b: 1, a: [{ d: 2, c: 3 }] }), '{"a":[{"c":3,"d":2}],"b":1}');
  });

  it("fields Capsule does not build are a 501 naming them; VM settings are refused in an ensure", () => {
    for (const [body, field] of [
      [{ ports: [{ port: 443, targetPort: 3000 }] }, "template.ports"],
      [{ somethingNew: 1 }, "template.somethingNew"],
      [{ idleTimeoutSeconds: 60 }, "template.idleTimeoutSeconds"],
    ] as const) {
      const err = refused(() => templateLayer(body, false));
      assert.deepEqual([err.status, err.code, err.extra.unsupported], [501, "BAD_REQUEST", true]);
      assert.match(err.message, new RegExp(`^${field.replace(".", "\\.")} is not supported by Capsule`));
    }
    assert.equal(refused(() => specLayers({ snapshot: { ports: [] } }, true)).message.split(" ")[0], "spec.snapshot.ports");
    // An empty git block (the client always sends config: {}) is no request to clone anything.
    assert.deepEqual(templateLayer({ git: { config: {} }, aptDeps: ["jq"] }, false).layer.aptDeps, ["jq"]);
  });

  it("git.repos (and the deprecated gitRepos) parse into repositories; their commits are in the hash", () => {
    const { layer } = templateLayer({ git: { config: { user: { name: "A", email: null } }, repos: [{ repo: "https://git.example/a", path: "/app", rev: "main" }] }, gitRepos: [{ repo: "https://git.example/b", path: "/srv/b" }] }, false);
    assert.deepEqual(layer.repos, [
      { repo: "https://git.example/a", path: "/app", rev: "main", where: "template.git.repos[0]" },
      { repo: "https://git.example/b", path: "/srv/b", where: "template.gitRepos[0]" },
    ]);
    assert.deepEqual(layer.gitUser, { name: "A" });
    const at = (a: string, b: string) => [
      { url: "https://git.example/a", commit: a },
      { url: "https://git.example/b", commit: b },
    ];
    const c1 = "1".repeat(40);
    const c2 = "2".repeat(40);
    assert.equal(layerHash(layer, undefined, at(c1, c2)), layerHash(layer, undefined, at(c1, c2)));
    assert.notEqual(layerHash(layer, undefined, at(c1, c2)), layerHash(layer, undefined, at(c2, c2)), "a new commit is a new layer");
    assert.throws(() => layerHash(layer, undefined), /resolved commit/);
    // A layer without repositories hashes as before they existed.
    const plain = templateLayer({ aptDeps: ["jq"] }, false).layer;
    assert.equal(layerHash(plain, undefined), layerHash(templateLayer({ aptDeps: ["jq"], git: { config: {}, repos: [] } }, false).layer, undefined));
    for (const [git, field] of [
      [{ repos: [{ repo: "https://x/a", path: "relative" }] }, "template.git.repos.0.path"],
      [{ repos: [{ repo: "https://x/a", path: "/a/../b" }] }, "template.git.repos.0.path"],
      [{ repos: [{ repo: "https://x/a", path: "/a", rev: "--upload-pack=sh" }] }, "template.git.repos.0.rev"],
      [{ repos: [{ repo: "https://x/a", path: "/a", depth: 1 }] }, "template.git.repos.0"],
      [{ config: { core: { hooksPath: "/x" } } }, "template.git.config"],
      [{ repos: [{ repo: "https://x/a", path: "/a" }, { repo: "https://x/b", path: "/a/b" }] }, "template.git.repos[1].path"],
    ] as const) {
      const err = refused(() => templateLayer({ git }, false));
      assert.equal(err.code, "VALIDATION_ERROR", err.message);
      assert.ok(err.message.startsWith(field), `${err.message} names ${field}`);
    }
  });

  it("bad values are VALIDATION_ERRORs naming the field; a base snapshot only on the innermost layer", () => {
    assert.match(refused(() => templateLayer({ aptDeps: ["jq; rm -rf /"] }, false)).message, /^template\.aptDeps\.0: must be a Debian package name/);
    assert.match(refused(() => templateLayer({ additionalFiles: { relative: { content: "" } } }, false)).message, /additionalFiles/);
    assert.equal(refused(() => specLayers({ snapshotId: "snap-1", snapshot: { aptDeps: ["jq"] } }, false)).code, "VALIDATION_ERROR");
  });
});

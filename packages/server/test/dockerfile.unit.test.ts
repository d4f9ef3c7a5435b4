/**
 * The Dockerfile subset of `baseImage.dockerfileContent`: FROM of a Debian suite, RUN (shell and
 * JSON forms), ENV (both forms, quotes, $VAR), WORKDIR (relative to the last), USER; line
 * continuations and comments; everything else refused naming the instruction and its line, and
 * through the layer parser a 501 (unsupported) or a VALIDATION_ERROR (syntax).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ApiError } from "../src/errors.js";
import { BASE_IMAGE_ENV, DockerfileSyntaxError, DockerfileUnsupportedError, parseDockerfile } from "../src/builds/dockerfile.js";
import { layerHash, specLayers, templateLayer } from "../src/builds/layers.js";

const parse = (text: string) => parseDockerfile(text, BASE_IMAGE_ENV);

describe("the Dockerfile subset", () => {
  it("parses FROM, RUN, ENV, WORKDIR and USER with continuations, comments and both forms", () => {
    const df = parse(
      [
        "# syntax=docker/dockerfile:1",
        "FROM debian:trixie-slim",
        "",
        'ENV APP_HOME=/srv/app GREETING="hello world" \\',
        "    PATH=/opt/tools/bin:$PATH",
        "ENV LEGACY  two words",
        "RUN apt-get update && \\",
        "  # a comment inside the continuation",
        "  apt-get install -y jq",
        'RUN ["printf", "%s\\n", "it\'s exec form"]',
        "WORKDIR ${APP_HOME}",
        "WORKDIR sub",
        "user app",
      ].join("\n"),
    );
    assert.equal(df.suite, "trixie");
    assert.deepEqual(df.steps, [
      { op: "ENV", line: 4, vars: { APP_HOME: "/srv/app", GREETING: "hello world", PATH: `/opt/tools/bin:${BASE_IMAGE_ENV.PATH}` } },
      { op: "ENV", line: 6, vars: { LEGACY: "two words" } },
      { op: "RUN", line: 7, command: "apt-get update &&   apt-get install -y jq" },
      { op: "RUN", line: 10, command: `exec printf '%s\n' "it's exec form"` },
      { op: "WORKDIR", line: 11, path: "/srv/app" },
      { op: "WORKDIR", line: 12, path: "/srv/app/sub" },
      { op: "USER", line: 13, user: "app" },
    ]);
  });

  it("FROM maps Debian tags to the suite's base image and refuses anything else", () => {
    for (const [ref, suite] of [["debian:trixie", "trixie"], ["debian:13-slim", "trixie"], ["docker.io/library/debian:bookworm", "bookworm"], ["debian:12", "bookworm"]]) {
      assert.equal(parse(`FROM ${ref}`).suite, suite, ref);
    }
    for (const ref of ["debian", "debian:sid", "ubuntu:24.04", "node:20", "debian:trixie AS build", "--platform=linux/arm64 debian:trixie"]) {
      assert.throws(() => parse(`FROM ${ref}`), DockerfileUnsupportedError, ref);
    }
    assert.throws(() => parse("RUN true"), /RUN on line 1: the first instruction must be FROM/);
    assert.throws(() => parse("# only a comment\n"), DockerfileSyntaxError);
  });

  it("refuses other instructions, flags and substitution forms naming the instruction and its line", () => {
    const refused = (text: string) => assert.throws(() => parse(`FROM debian:trixie\n${text}`), DockerfileUnsupportedError);
    assert.throws(() => parse("FROM debian:trixie\nRUN true\nCOPY . /app"), /^Error: COPY on line 3 is not supported/);
    assert.throws(() => parse("FROM debian:trixie\nFROM debian:bookworm"), /FROM on line 2 is not supported/);
    for (const text of ["ARG X=1", "CMD [\"sh\"]", "ENTRYPOINT sh", "EXPOSE 80", "ADD x y", "RUN --mount=type=cache,target=/x true", "ENV A=${B:-x}", "USER app:staff", "USER 1000"]) refused(text);
  });

  it("syntax errors: a dangling continuation, an unterminated quote, a bad ENV name, an empty instruction", () => {
    for (const text of ["RUN true \\", 'ENV A="x', "ENV 1A=x", "ENV A=1 B", "WORKDIR", '["a", 1]'.replace(/^/, "RUN ")]) {
      assert.throws(() => parse(`FROM debian:trixie\n${text}`), DockerfileSyntaxError, text);
    }
  });

  it("through the layers: a 501 naming the instruction, a VALIDATION_ERROR for syntax, hashed by content, innermost only", () => {
    const err = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        assert.ok(e instanceof ApiError);
        return e;
      }
      return assert.fail("no error");
    };
    const copy = err(() => templateLayer({ baseImage: { dockerfileContent: "FROM debian:trixie\nCOPY a b" } }, false));
    assert.deepEqual([copy.status, copy.code, copy.extra.unsupported], [501, "BAD_REQUEST", true]);
    assert.match(copy.message, /^template\.baseImage\.dockerfileContent: COPY on line 2 is not supported/);
    assert.equal(err(() => templateLayer({ baseImage: { dockerfileContent: "FROM debian:trixie\nRUN x \\" } }, false)).code, "VALIDATION_ERROR");
    assert.equal(err(() => templateLayer({ baseImage: {} }, false)).code, "VALIDATION_ERROR");
    assert.equal(err(() => templateLayer({ baseImage: { dockerfileContent: "FROM debian:trixie" }, snapshotId: "s" }, false)).code, "VALIDATION_ERROR");
    assert.match(err(() => specLayers({ baseImage: { dockerfileContent: "FROM debian:trixie" }, snapshot: { aptDeps: ["jq"] } }, false)).message, /^spec\.baseImage: only the innermost layer/);

    const a = templateLayer({ baseImage: { dockerfileContent: "FROM debian:trixie\nRUN echo 1" } }, false).layer;
    const b = templateLayer({ baseImage: { dockerfileContent: "FROM debian:trixie\n# same\nRUN echo 1\n" } }, false).layer;
    const c = templateLayer({ baseImage: { dockerfileContent: "FROM debian:bookworm\nRUN echo 1" } }, false).layer;
    assert.equal(layerHash(a, undefined), layerHash(b, undefined), "comments and blank lines do not change the hash");
    assert.notEqual(layerHash(a, undefined), layerHash(c, undefined), "the suite does");
    const plain = templateLayer({ aptDeps: ["jq"] }, false).layer;
    assert.equal(plain.dockerfile, undefined);
  });
});

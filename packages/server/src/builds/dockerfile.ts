/**
 * The subset of a Dockerfile a build's `baseImage.dockerfileContent` may use: one `FROM` of a
 * Debian suite Capsule has a base image of, then `RUN`, `ENV`, `WORKDIR` and `USER`. Parsed
 * strictly: line continuations, comments, JSON-array and shell forms; any other instruction,
 * flag or substitution form is refused naming it and its line, never skipped.
 * @module
 */
import { shq } from "@capsule/contract/shell";

/** A Dockerfile that does not parse (a syntax error: the caller's VALIDATION_ERROR). */
export class DockerfileSyntaxError extends Error {}
/** Valid Dockerfile that uses something outside the subset (the caller's 501). */
export class DockerfileUnsupportedError extends Error {}

/** The base image's environment (the agent's default PATH): what `$PATH` means before any ENV. */
export const BASE_IMAGE_ENV: Readonly<Record<string, string>> = { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" };

/** The most bytes and instructions one Dockerfile may have. */
export const DOCKERFILE_LIMITS = { bytes: 256 * 1024, instructions: 512 } as const;

/** `debian:<tag>` tags and the suite (Capsule base image name) each means. -slim is the same image: Capsule's is minimal. */
const DEBIAN_TAGS: Record<string, string> = { trixie: "trixie", "13": "trixie", bookworm: "bookworm", "12": "bookworm" };
const DEBIAN_REPOS = new Set(["debian", "library/debian", "docker.io/library/debian", "docker.io/debian"]);

export type DockerStep =
  | { op: "RUN"; line: number; command: string }
  | { op: "ENV"; line: number; vars: Record<string, string> }
  | { op: "WORKDIR"; line: number; path: string }
  | { op: "USER"; line: number; user: string };

export interface Dockerfile {
  /** The base image (a Debian suite) FROM names. */
  suite: string;
  steps: DockerStep[];
}

interface Instruction {
  line: number;
  keyword: string;
  rest: string;
}

/** Joins continued lines (a trailing backslash) and drops comments and blank lines. */
function instructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending: { line: number; text: string } | undefined;
  text.split(/\r?\n/).forEach((raw, i) => {
    const trimmed = raw.trim();
    // Comment and blank lines, also inside a continuation (Docker drops those too).
    if (trimmed.startsWith("#") || trimmed === "") return;
    // As Docker: the backslash and the newline go, the next line joins as it is.
    const continued = trimmed.endsWith("\\");
    const piece = continued ? raw.trimEnd().slice(0, -1) : raw.trimEnd();
    pending = pending ? { line: pending.line, text: pending.text + piece } : { line: i + 1, text: piece };
    if (continued) return;
    const m = /^(\S+)\s*(.*)$/s.exec(pending.text.trim());
    if (m) out.push({ line: pending.line, keyword: m[1]!.toUpperCase(), rest: m[2]!.trim() });
    pending = undefined;
  });
  if (pending) throw new DockerfileSyntaxError(`line ${pending.line}: the Dockerfile ends inside a line continuation`);
  return out;
}

/** The JSON-array (exec) form's argv, or undefined for the shell form. */
function jsonForm(rest: string, line: number): string[] | undefined {
  if (!rest.startsWith("[")) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(rest);
  } catch {
    return undefined; // Docker runs a malformed array as a shell command too.
  }
  if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === "string")) throw new DockerfileSyntaxError(`line ${line}: the JSON form must be a non-empty array of strings`);
  return v as string[];
}

/** Splits on whitespace, honouring "…", '…' and backslash escapes (ENV's key=value words). */
function words(s: string, line: number): string[] {
  const out: string[] = [];
  let cur = "";
  let quote: string | undefined;
  let inWord = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === "\\" && quote === '"' && i + 1 < s.length) cur += s[++i];
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === "\\" && i + 1 < s.length) {
      cur += s[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) out.push(cur);
      cur = "";
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (quote) throw new DockerfileSyntaxError(`line ${line}: unterminated ${quote}`);
  if (inWord) out.push(cur);
  return out;
}

/** ENV's `k=v k2="v 2"` form, or the older `k the rest of the line`. */
function envPairs(rest: string, line: number): Array<[string, string]> {
  const w = words(rest, line);
  if (!w[0]!.includes("=")) {
    const name = /^\S+/.exec(rest)![0];
    return [[name, words(rest.slice(name.length), line).join(" ")]];
  }
  return w.map((x) => {
    const i = x.indexOf("=");
    if (i < 0) throw new DockerfileSyntaxError(`line ${line}: ENV ${JSON.stringify(x)} is not name=value`);
    return [x.slice(0, i), x.slice(i + 1)];
  });
}

/** `$VAR` and `${VAR}` from the ENV so far; other `${…}` forms are refused. */
function substitute(s: string, env: Record<string, string>, line: number, keyword: string): string {
  return s.replace(/\$(?:\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g, (_m, braced: string | undefined, bare: string | undefined) => {
    const name = braced ?? bare!;
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new DockerfileUnsupportedError(`${keyword} on line ${line}: only $NAME and \${NAME} substitutions are supported, not \${${name}}`);
    return env[name] ?? "";
  });
}

function refuseFlags(ins: Instruction): void {
  if (ins.rest.startsWith("--")) throw new DockerfileUnsupportedError(`${ins.keyword} on line ${ins.line}: flags (${ins.rest.split(/\s/)[0]}) are not supported`);
}

function parseFrom(ins: Instruction): string {
  refuseFlags(ins);
  const parts = ins.rest.split(/\s+/);
  if (parts.length !== 1 || parts[0] === "") throw new DockerfileUnsupportedError(`FROM on line ${ins.line}: only \`FROM debian:<suite>\` is supported (no stage names)`);
  const ref = parts[0]!;
  const [repo, tag = "latest"] = ref.split(":") as [string, string?];
  const suite = DEBIAN_TAGS[tag.replace(/-slim$/, "")];
  if (!DEBIAN_REPOS.has(repo) || !suite) {
    throw new DockerfileUnsupportedError(`FROM ${ref} on line ${ins.line}: Capsule builds from Debian base images it made with mmdebstrap: debian:trixie, debian:bookworm (or -slim, 13, 12)`);
  }
  return suite;
}

/** Parses `text`; the ENV a step sees includes `initialEnv` (the base image's PATH) for substitutions. */
export function parseDockerfile(text: string, initialEnv: Readonly<Record<string, string>>): Dockerfile {
  if (Buffer.byteLength(text) > DOCKERFILE_LIMITS.bytes) throw new DockerfileSyntaxError(`the Dockerfile is over ${DOCKERFILE_LIMITS.bytes} bytes`);
  const list = instructions(text);
  if (list.length > DOCKERFILE_LIMITS.instructions) throw new DockerfileSyntaxError(`the Dockerfile has over ${DOCKERFILE_LIMITS.instructions} instructions`);
  const [first, ...rest] = list;
  if (!first) throw new DockerfileSyntaxError("the Dockerfile has no FROM");
  if (first.keyword !== "FROM") throw new DockerfileUnsupportedError(`${first.keyword} on line ${first.line}: the first instruction must be FROM`);
  const suite = parseFrom(first);
  const env = { ...initialEnv };
  const steps: DockerStep[] = [];
  let workdir = "/";
  for (const ins of rest) {
    const { line, keyword } = ins;
    if (ins.rest === "") throw new DockerfileSyntaxError(`line ${line}: ${keyword} needs arguments`);
    switch (keyword) {
      case "RUN": {
        refuseFlags(ins);
        const argv = jsonForm(ins.rest, line);
        // The exec form runs no shell in Docker: `exec` with each word quoted does the same.
        steps.push({ op: "RUN", line, command: argv ? `exec ${argv.map(shq).join(" ")}` : ins.rest });
        break;
      }
      case "ENV": {
        const vars: Record<string, string> = {};
        for (const [k, v] of envPairs(ins.rest, line)) {
          if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new DockerfileSyntaxError(`line ${line}: ENV name ${JSON.stringify(k)} is not a variable name`);
          vars[k] = substitute(v, env, line, keyword);
        }
        Object.assign(env, vars);
        steps.push({ op: "ENV", line, vars });
        break;
      }
      case "WORKDIR": {
        const argv = jsonForm(ins.rest, line);
        const p = substitute(argv ? argv.join(" ") : ins.rest, env, line, keyword);
        workdir = p.startsWith("/") ? p : `${workdir.replace(/\/$/, "")}/${p}`;
        steps.push({ op: "WORKDIR", line, path: workdir });
        break;
      }
      case "USER": {
        const user = substitute(ins.rest, env, line, keyword);
        if (!/^[a-z_][a-z0-9_-]*$/.test(user)) throw new DockerfileUnsupportedError(`USER ${user} on line ${line}: only a user name is supported (no uid, no :group)`);
        steps.push({ op: "USER", line, user });
        break;
      }
      default:
        throw new DockerfileUnsupportedError(`${keyword} on line ${line} is not supported: a Dockerfile may use FROM, RUN, ENV, WORKDIR and USER`);
    }
  }
  return { suite, steps };
}

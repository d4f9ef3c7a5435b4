import { ApiError } from "./errors.js";

/**
 * Checks a file path from the API: absolute, no NUL, no `..` segment. The guest agent resolves it
 * inside the VM (as the request's user), so this is about clear errors, not containment.
 */
export function guestPath(p: string): string {
  if (!p.startsWith("/")) throw new ApiError("FILES_BAD_REQUEST", `path must be absolute, got ${JSON.stringify(p)}`);
  if (p.includes("\0")) throw new ApiError("FILES_BAD_REQUEST", "path must not contain NUL bytes");
  if (p.split("/").includes("..")) throw new ApiError("FILES_BAD_REQUEST", `path must not contain '..' segments, got ${JSON.stringify(p)}`);
  if (p.length > 4096) throw new ApiError("FILES_BAD_REQUEST", "path is longer than 4096 bytes");
  return p;
}

/**
 * Strict base64: whole quads, padding only at the end. Checked in linear time without a repeated
 * group: `^(?:[A-Za-z0-9+/]{4})*...$` overflowed the regexp stack on a 1 MiB string (a 500, found by
 * the API fuzzer).
 */
function isBase64(s: string): boolean {
  if (s.length % 4 !== 0) return false;
  const body = s.endsWith("==") ? s.slice(0, -2) : s.endsWith("=") ? s.slice(0, -1) : s;
  return /^[A-Za-z0-9+/]*$/.test(body);
}

/** Decodes file content; Buffer.from would silently skip invalid base64, so it is checked first. */
export function decodeContent(content: string, encoding: string | undefined): Buffer {
  if (encoding === undefined || encoding === "base64") {
    if (!isBase64(content)) throw new ApiError("FILES_BAD_REQUEST", "content is not valid base64");
    return Buffer.from(content, "base64");
  }
  return Buffer.from(content, "utf8");
}

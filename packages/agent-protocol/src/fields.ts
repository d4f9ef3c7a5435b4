/**
 * The field checks every validator of the protocol is built from: each reads one field of a
 * parsed JSON object and returns it typed, or throws a {@link ProtocolError} naming the field.
 * @module
 */
import path from "node:path";
import { ProtocolError } from "./errors.js";

export type Fields = Record<string, unknown>;

export const fail = (message: string): never => {
  throw new ProtocolError(message);
};

export function object(value: unknown, what: string): Fields {
  if (typeof value !== "object" || value === null || Array.isArray(value)) fail(`${what} must be a JSON object`);
  return value as Fields;
}

export function noNul(value: string, what: string): string {
  if (value.includes("\0")) fail(`${what} must not contain NUL bytes`);
  return value;
}

/** Every string ends up in a C string somewhere (argv, environ, a path), so none may hold NUL. */
export function str(o: Fields, key: string): string {
  const v = o[key];
  if (typeof v !== "string") fail(`"${key}" must be a string`);
  return noNul(v as string, `"${key}"`);
}

export function optStr(o: Fields, key: string): string | undefined {
  return o[key] === undefined ? undefined : str(o, key);
}

export function uint(o: Fields, key: string, max = Number.MAX_SAFE_INTEGER): number {
  const v = o[key];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0 || v > max) fail(`"${key}" must be an integer from 0 to ${max}`);
  return v as number;
}

export function optUint(o: Fields, key: string, max = Number.MAX_SAFE_INTEGER): number | undefined {
  return o[key] === undefined ? undefined : uint(o, key, max);
}

export function intOrNull(o: Fields, key: string): number | null {
  const v = o[key];
  if (v === null) return null;
  if (typeof v !== "number" || !Number.isSafeInteger(v)) fail(`"${key}" must be an integer or null`);
  return v as number;
}

export function finite(o: Fields, key: string): number {
  const v = o[key];
  if (typeof v !== "number" || !Number.isFinite(v)) fail(`"${key}" must be a number`);
  return v as number;
}

export function bool(o: Fields, key: string): boolean {
  const v = o[key];
  if (typeof v !== "boolean") fail(`"${key}" must be a boolean`);
  return v as boolean;
}

export function optBool(o: Fields, key: string): boolean | undefined {
  return o[key] === undefined ? undefined : bool(o, key);
}

export function oneOf<T extends string>(o: Fields, key: string, allowed: readonly T[]): T {
  const v = o[key];
  if (typeof v !== "string" || !(allowed as readonly string[]).includes(v)) fail(`"${key}" must be one of ${allowed.join(", ")}`);
  return v as T;
}

export function array(o: Fields, key: string): unknown[] {
  const v = o[key];
  if (!Array.isArray(v)) fail(`"${key}" must be an array`);
  return v as unknown[];
}

/** Absolute, NUL-free, normalised (no `..`, no doubled or trailing slashes). */
export function absPath(o: Fields, key: string): string {
  const v = str(o, key);
  if (!path.posix.isAbsolute(v)) fail(`"${key}" must be an absolute path, got ${JSON.stringify(v)}`);
  const normal = path.posix.normalize(v);
  return normal.length > 1 && normal.endsWith("/") ? normal.slice(0, -1) : normal;
}

export function optAbsPath(o: Fields, key: string): string | undefined {
  return o[key] === undefined ? undefined : absPath(o, key);
}

export function optEnv(o: Fields, key: string): Record<string, string> | undefined {
  if (o[key] === undefined) return undefined;
  const env = object(o[key], `"${key}"`);
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (name === "" || name.includes("=") || name.includes("\0")) fail(`bad environment variable name ${JSON.stringify(name)}`);
    if (typeof value !== "string") fail(`environment variable ${name} must be a string`);
    out[name] = noNul(value as string, `environment variable ${name}`);
  }
  return out;
}

export function strings(o: Fields, key: string): string[] {
  const v = array(o, key);
  if (!v.every((a): a is string => typeof a === "string")) fail(`"${key}" must be an array of strings`);
  return (v as string[]).map((a) => noNul(a, `"${key}"`));
}

/**
 * Pieces the `/v5` schemas share: field shapes that appear in more than one request.
 * @module
 */
import { z } from "zod";
import { MAX_IDLE_TIMEOUT_SECONDS } from "../schemas.js";
import { LINUX_USER_RE } from "../wire.js";

export const LinuxName = z.string().regex(LINUX_USER_RE, "must be a Linux user name");

/** 0.2 sends `-1` (or nothing) for "never"; `null` is taken to mean the same. */
export const Seconds = z.number().int().min(-1).nullish();

/** A VM's idle timeout: -1 or null for never, else 1 s up to the server's maximum. */
export const IdleTimeoutSeconds = z
  .number()
  .int()
  .min(-1)
  .max(MAX_IDLE_TIMEOUT_SECONDS)
  .refine((n) => n !== 0, "must be -1 (never) or at least 1")
  .nullish();

/**
 * VM fields for features Capsule does not have, in a create and a PATCH: accepted so the server
 * can refuse them by name (501) instead of ignoring them.
 */
export const UnsupportedVmFields = {
  slug: z.string().nullish(),
  reassignSlug: z.boolean().optional(),
  autoDeleteSeconds: Seconds,
  ttlSeconds: Seconds,
  maxRunSeconds: Seconds,
  maxRunTotalSeconds: Seconds,
  automaticRestart: z.boolean().optional(),
  metadata: z.record(z.string(), z.string()).optional(),
};

/** The largest permission bits a mode may carry (setuid, setgid, sticky, rwx×3). */
export const MAX_MODE = 0o7777;

export const Sha256Hex = z.string().regex(/^[0-9a-fA-F]{64}$/, "must be 64 hex digits");

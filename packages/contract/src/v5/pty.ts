/**
 * `/v5` PTY sessions (`vm.pty` of freestyle 0.2): the WebSocket's query and server messages, and
 * the REST list and close. A session has a small per-VM number (its id for 0.2) and optionally a
 * slug (get-or-create by name); 0.2 names signals in lower case (`sigint`, `sigkill`), which the
 * shared PTY messages of `../ws.js` accept in any case.
 * @module
 */
import { z } from "zod";
import { LINUX_USER_RE, MAX_PTY_SIZE } from "../wire.js";

/** A session's name: lower-case letters, digits and inner hyphens, not all digits (digits are a session number). */
export const PTY_SLUG_RE = /^(?![0-9]+$)[a-z0-9](?:-?[a-z0-9])*$/;
export const MAX_PTY_SLUG_LENGTH = 63;

export const PtySlug = z.string().max(MAX_PTY_SLUG_LENGTH).regex(PTY_SLUG_RE, "must be lower-case letters, digits and inner hyphens, not all digits");
const LinuxUser = z.string().regex(LINUX_USER_RE, "must be a Linux user name");
const Size = z.coerce.number().int().min(1).max(MAX_PTY_SIZE);

/** `GET /v5/vms/{id}/pty` (WebSocket): what 0.2 puts in the query, each only when the caller set it. */
export const PtyOpenQuery = z.object({
  exec: z.string().min(1).optional().meta({ description: "Command, run through /bin/sh -c. Absent: the user's shell, interactive." }),
  cols: Size.default(80),
  rows: Size.default(24),
  linuxUser: LinuxUser.optional().meta({ description: "Absent: the VM's uid-1000 account, or root when it has none." }),
  slug: PtySlug.optional().meta({ description: "Get-or-create: a running session of this name is attached (sessionInfo.created false) and `exec` is not run." }),
  replaceOnExit: z
    .enum(["true", "false"])
    .transform((v) => v === "true")
    .optional()
    .meta({ description: "Respawn the command in place when it exits (same id, slug and scrollback), unless it died within a second of its start." }),
});
export type PtyOpenQuery = z.infer<typeof PtyOpenQuery>;

/** `?linuxUser=` of the attach socket and the REST calls. */
export const PtyUserQuery = z.object({ linuxUser: LinuxUser.optional() });

/** Server → client, first on open and on attach. */
export const PtySessionInfoV5 = z.object({ type: z.literal("sessionInfo"), sessionId: z.number().int(), slug: PtySlug.optional(), created: z.boolean() });
export type PtySessionInfoV5 = z.infer<typeof PtySessionInfoV5>;
/** Server → client: what went wrong (0.2 calls `onError`; before `sessionInfo` it rejects the open). */
export const PtyErrorV5 = z.object({ type: z.literal("error"), message: z.string() });
export type PtyErrorV5 = z.infer<typeof PtyErrorV5>;

export const PtySessionV5 = z
  .object({
    sessionId: z.number().int(),
    state: z.enum(["running", "exited"]),
    createdUnix: z.number().int().meta({ description: "Seconds since the epoch." }),
    cols: z.number().int(),
    rows: z.number().int(),
    exitCode: z.number().int().nullable().optional(),
    linuxUser: z.string(),
    slug: PtySlug.optional(),
  })
  .meta({ id: "V5PtySession" });
export type PtySessionV5 = z.infer<typeof PtySessionV5>;

export const PtySessionListV5 = z.object({ sessions: z.array(PtySessionV5) }).meta({ id: "V5PtySessionList" });
export const PtyCloseResponseV5 = z.object({ sessionId: z.number().int(), exitCode: z.number().int().nullable().optional() }).meta({ id: "V5PtyCloseResponse" });

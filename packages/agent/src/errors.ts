import { ProtocolError, type AgentErrorCode } from "@capsule/agent-protocol";

/** A failure the host should see as an `error` reply with this code. */
export class AgentError extends Error {
  constructor(
    readonly code: AgentErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export function badRequest(message: string): AgentError {
  return new AgentError("BAD_REQUEST", message);
}

const ERRNO_CODES: Record<string, AgentErrorCode> = {
  ENOENT: "FILE_NOT_FOUND",
  EACCES: "PERMISSION_DENIED",
  EPERM: "PERMISSION_DENIED",
  EISDIR: "IS_A_DIRECTORY",
  ENOTDIR: "NOT_A_DIRECTORY",
  EEXIST: "ALREADY_EXISTS",
  ENOTEMPTY: "DIRECTORY_NOT_EMPTY",
};

/** Turns anything thrown into an AgentError; errno failures keep their meaning. */
export function toAgentError(err: unknown): AgentError {
  if (err instanceof AgentError) return err;
  // What the host sent is not the protocol: a bad frame, bad JSON, a wrong shape or type.
  if (err instanceof ProtocolError) return new AgentError("BAD_REQUEST", err.message);
  const errno = (err as NodeJS.ErrnoException | undefined)?.code;
  const message = err instanceof Error ? err.message : String(err);
  const code = errno === undefined ? undefined : ERRNO_CODES[errno];
  return new AgentError(code ?? "INTERNAL", message);
}

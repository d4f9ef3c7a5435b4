/**
 * What every validator and the frame decoder throw when bytes from the other side are not the
 * protocol: bad JSON, a wrong shape or type, an unknown frame type, an oversized frame. Each side
 * maps it to its own coded error (the agent: `BAD_REQUEST`; the host: `AGENT_PROTOCOL_ERROR`).
 */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

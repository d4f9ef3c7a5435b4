/**
 * The wire protocol between the host (engine) and the guest agent that runs inside every VM.
 *
 * Transport: a unix stream socket the agent listens on inside the VM (`/.capsule-run/agent.sock`,
 * a root-only directory bind-mounted from the host). The host opens **one connection per
 * operation**; closing the connection ends the operation (for a PTY attach, it detaches). One
 * connection per operation gives each stream its own kernel backpressure, so a 64 MiB upload or
 * a chatty process never buffers unboundedly in either process.
 *
 * Every byte on a connection is a frame: `[type: u8][length: u32 big-endian][payload]`.
 * The first frame the host sends is a JSON frame holding a {@link Request}. After that:
 *
 * | op            | host → agent                                  | agent → host                                                  |
 * |---------------|-----------------------------------------------|---------------------------------------------------------------|
 * | `version`     | –                                             | JSON {@link VersionReply}, close                              |
 * | `exec`        | `Stdin` chunks, `Eof`, JSON {@link ExecControl}| JSON `started`, `Stdout`/`Stderr` chunks, JSON `exit`, close |
 * | `pty.open`    | `Stdin` (keystrokes), JSON {@link PtyControl} | JSON `session`, `Stdout` (terminal bytes), JSON `exit`, close |
 * | `pty.attach`  | as `pty.open`                                 | JSON `session`, scrollback then live `Stdout`, JSON `exit`    |
 * | `fs.read`     | –                                             | JSON `stat`, `Stdout` chunks, `Eof`, close                    |
 * | `fs.write`    | `Stdin` chunks, `Eof`                         | JSON `ok` (after the atomic rename), close                    |
 * | `tcp.connect` | after `ok`: raw TCP bytes, unframed           | JSON `ok`, then raw TCP bytes, unframed, until either closes  |
 * | `ckpt.prepare`| –                                             | JSON `ok`, close; then no listener until the checkpoint ends  |
 * | other ops     | –                                             | one JSON reply, close                                         |
 *
 * The `svc.*` ops (services the agent supervises) are each one JSON request and one reply: see
 * `services.ts`.
 *
 * Any failure is a JSON {@link ErrorReply} (`type: "error"`), after which the agent closes.
 *
 * Each side treats the other's bytes as hostile and checks them with the validators here
 * (`validate.ts`: {@link parseRequest} and the control parsers on the agent, {@link parseReply}
 * on the host); a frame that fails is a {@link ProtocolError}, which ends that one connection.
 * The host also puts a deadline on every wait (see the engine's `AGENT_DEADLINES`). Signal names
 * and numbers come from one table, `signals.ts`.
 * @module
 */
export * from "./errors.js";
export * from "./frames.js";
export * from "./messages.js";
export * from "./service-validate.js";
export * from "./services.js";
export * from "./signals.js";
export * from "./validate.js";

/**
 * `guest.connectTcp` on a real sandbox: the host reaches a port of the VM's loopback through the
 * agent (never through the VM's network), bytes go both ways with a half-close, and a port
 * nothing listens on is refused with agentCode CONNECTION_REFUSED.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { useEngine } from "../test-support/harness.js";

/** The bundle's Node, started the way the VM starts the agent. */
const VM_NODE = "/.capsule/lib/ld-linux-x86-64.so.2 --library-path /.capsule/lib /.capsule/bin/node";

/** Echoes with a prefix; on the client's FIN answers how many bytes came, then ends. Localhost only. */
const ECHO = `
const net = require("net");
net.createServer({ allowHalfOpen: true }, (c) => {
  let n = 0;
  c.on("data", (d) => { n += d.length; if (n === d.length) c.write("echo:" + d.subarray(0, 5)); });
  c.on("end", () => c.end(" total=" + n));
}).listen(7000, "127.0.0.1", () => console.log("ready"));
`;

describe("tcp tunnel", () => {
  const t = useEngine();

  it("carries a TCP stream to the VM's loopback both ways, half-close included; nothing listening is refused", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { engine } = t.get();
    const vm = (await engine.createVm()).id;
    await engine.guest.writeFile(vm, "/srv/echo.js", ECHO);
    const start = await engine.guest.exec(vm, { command: `setsid ${VM_NODE} /srv/echo.js >/srv/echo.log 2>&1 </dev/null & for i in $(seq 100); do grep -q ready /srv/echo.log && exit 0; sleep 0.05; done; cat /srv/echo.log; exit 1` });
    assert.equal(start.exitCode, 0, start.stdout + start.stderr);

    const sock = await engine.guest.connectTcp(vm, 7000);
    const chunks: Buffer[] = [];
    const ended = new Promise<string>((resolve) => {
      sock.on("data", (c: Buffer) => chunks.push(c));
      sock.once("end", () => resolve(Buffer.concat(chunks).toString()));
      sock.resume();
    });
    sock.write("hello");
    sock.end(Buffer.alloc(2 * 1024 * 1024, 7));
    assert.equal(await ended, `echo:hello total=${5 + 2 * 1024 * 1024}`);
    sock.destroy();

    await assert.rejects(engine.guest.connectTcp(vm, 7001), (e: Error & { agentCode?: string }) => e.agentCode === "CONNECTION_REFUSED");
  });
});

/**
 * Nothing but the owner's own use keeps a VM awake: another tenant hammering its id with
 * requests that answer 404 does not, and neither does a WebSocket whose handshake was refused
 * after the guest side was opened.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { describe, it } from "node:test";
import { call, useServer } from "../test-support/harness.js";
import { connect, wsUrl } from "../test-support/ws-client.js";

async function stateOf(url: string, key: string, vm: string): Promise<unknown> {
  return (await call(url, key, "GET", `/v1/vms/${vm}`)).body.state;
}

async function waitForState(url: string, key: string, vm: string, state: string, timeoutMs: number, meanwhile?: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await stateOf(url, key, vm);
    if (s === state) return;
    if (Date.now() > deadline) throw new Error(`VM ${vm} is ${String(s)} after ${timeoutMs} ms, expected ${state}`);
    if (meanwhile) await meanwhile();
    else await new Promise((r) => setTimeout(r, 200));
  }
}

/** An upgrade request without Sec-WebSocket-Key: the server opens the guest side, then `ws` refuses the handshake. */
function brokenHandshake(httpUrl: string, key: string, path: string): Promise<string> {
  const { hostname, port } = new URL(httpUrl);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(port), hostname, () => {
      sock.write(`GET ${path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${key}\r\n\r\n`);
    });
    let answer = "";
    sock.on("data", (d: Buffer) => (answer += d.toString("latin1")));
    sock.on("close", () => resolve(answer));
    sock.on("error", reject);
    sock.setTimeout(10_000, () => sock.destroy(new Error("no answer to the broken handshake")));
  });
}

describe("idle isolation", () => {
  const t = useServer({ idleCheckMs: 250 });

  it("tenant B's 404s on A's VM id do not keep A's VM from idle-suspending", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, keyB } = t.get();
    const vm = (await call(url, keyA, "POST", "/v1/vms", { idleTimeoutSeconds: 2 })).body.id as string;
    try {
      const routes: Array<[string, string, unknown?]> = [
        ["POST", `/v1/vms/${vm}/fork`, {}],
        ["POST", `/v1/vms/${vm}/snapshot`, {}],
        ["POST", `/v1/vms/${vm}/exec-await`, { command: "true" }],
        ["GET", `/v1/vms/${vm}/files/%2Fetc%2Fhostname`],
        ["PUT", `/v1/vms/${vm}/files-raw/%2Ftmp%2Fx`],
        ["GET", `/v1/vms/${vm}/pty/sessions`],
        ["POST", `/v1/vms/${vm}/start`, {}],
        ["GET", `/v1/vms/${vm}`],
      ];
      let sent = 0;
      const hammer = async () => {
        for (const [m, p, body] of routes) {
          const r = await call(url, keyB, m, p, body);
          assert.equal(r.status, 404, `${m} ${p}: ${JSON.stringify(r.body)}`);
          assert.equal(r.body.code, "VM_NOT_FOUND");
          sent++;
        }
        const ws = await connect(wsUrl(url, `/v1/vms/${vm}/exec-stream?command=true`), keyB);
        assert.equal(ws.status, 404);
        sent++;
      };
      // Idle timeout 2 s, checked every 250 ms: suspended within a few seconds, B hammering all along.
      const started = Date.now();
      await waitForState(url, keyA, vm, "suspended", 12_000, hammer);
      assert.ok(sent > 20, `B sent ${sent} requests while A's VM went idle`);
      assert.ok(Date.now() - started >= 1_500, "not suspended before its idle timeout");
      // A's own use still wakes it.
      assert.equal((await call(url, keyA, "POST", `/v1/vms/${vm}/exec-await`, { command: "echo up" })).body.stdout, "up\n");
      assert.equal(await stateOf(url, keyA, vm), "running");
    } finally {
      await call(url, keyA, "DELETE", `/v1/vms/${vm}`);
    }
  });

  it("a refused WebSocket handshake ends its process and its activity hold", async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const vm = (await call(url, keyA, "POST", "/v1/vms", { idleTimeoutSeconds: 2 })).body.id as string;
    try {
      const answer = await brokenHandshake(url, keyA, `/v1/vms/${vm}/exec-stream?command=${encodeURIComponent("sleep 600 # refused")}`);
      assert.match(answer, /^HTTP\/1\.1 400 /);
      const sleeping = async () => (await call(url, keyA, "POST", `/v1/vms/${vm}/exec-await`, { command: "ps -eo args | grep -c '^sleep 600' || true" })).body.stdout;
      const deadline = Date.now() + 5_000;
      while ((await sleeping()) !== "0\n") {
        assert.ok(Date.now() < deadline, "the command of the refused socket is still running");
        await new Promise((r) => setTimeout(r, 200));
      }
      await waitForState(url, keyA, vm, "suspended", 12_000);
    } finally {
      await call(url, keyA, "DELETE", `/v1/vms/${vm}`);
    }
  });
});

/**
 * The web console end to end, in Debian's Chromium (playwright-core) against a real server with
 * real gVisor VMs: the root URL lands in the sign-in, sign in, create a VM, terminal (echo,
 * resize → stty size, reload → scrollback replayed), upload a file and read it back through the
 * API, delete; a VM's page with its services (state, logs, stop and start); the Builds page (a
 * snapshot's build, phase logs, a failed build); and the security edges:
 * wrong and revoked keys, the CSRF header, single-use PTY tokens, sign-out, and tenant isolation.
 * Screenshots of the VM list, the terminal and a VM's services go to test-artifacts/.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { consoleDir } from "../src/console/routes.js";
import { pageFetch, screenshot, signIn, tryWebSocket, useBrowser, waitForLines } from "../test-support/browser.js";
import { call, useServer } from "../test-support/harness.js";

const SIZE_RE = /^(\d+) (\d+)$/;

describe("web console", () => {
  const t = useServer();
  const b = useBrowser();

  it("the root URL: a browser lands in the console's sign-in; API clients still get JSON", { timeout: 60_000 }, async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    const context = await (await b.get()).newContext();
    try {
      const page = await context.newPage();
      const res = await page.goto(`${url}/`);
      assert.equal(page.url(), `${url}/console/`, "the root URL redirects to the console");
      assert.equal(res?.status(), 200);
      await page.getByTestId("api-key").waitFor({ timeout: 10_000 });
      assert.ok(await page.getByTestId("sign-in").isVisible(), "the sign-in form is shown");
    } finally {
      await context.close();
    }
    // Raw HTTP: a redirect only for Accept with text/html; an API client's GET / is JSON, as before.
    const html = await fetch(`${url}/`, { redirect: "manual", headers: { accept: "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8" } });
    assert.equal(html.status, 302);
    assert.equal(html.headers.get("location"), "/console/");
    const anon = await fetch(`${url}/`, { redirect: "manual", headers: { accept: "application/json" } });
    assert.equal(anon.status, 401);
    assert.match(anon.headers.get("content-type") ?? "", /^application\/json/);
    assert.equal(((await anon.json()) as { code?: string }).code, "UNAUTHORIZED");
    const keyed = await fetch(`${url}/`, { redirect: "manual", headers: { authorization: `Bearer ${keyA}` } });
    assert.equal(keyed.status, 404);
    assert.equal(((await keyed.json()) as { code?: string }).code, "NOT_FOUND");
  });

  it("sign in, create a VM, terminal with resize and replay, upload, delete", { timeout: 240_000 }, async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    assert.ok(fs.existsSync(path.join(consoleDir(), "index.html")), `the console is not built at ${consoleDir()}: run npm run build`);
    const { url, keyA } = t.get();
    const context = await (await b.get()).newContext({ viewport: { width: 1280, height: 800 } });
    let vmId: string | undefined;
    try {
      const page = await context.newPage();
      await signIn(page, url, keyA);
      await page.getByTestId("account").filter({ hasText: "alice" }).waitFor();
      const cookie = (await context.cookies()).find((c) => c.name === "capsule_console");
      assert.ok(cookie?.httpOnly, "session cookie is HttpOnly");
      assert.equal(cookie.sameSite, "Strict");
      assert.ok(!cookie.value.includes(keyA.slice(4)), "the cookie is not the key");
      assert.equal(await page.evaluate("document.cookie"), "", "scripts cannot read the session");

      // Create from the base image, never idle-suspended.
      await page.getByTestId("create-idle").selectOption("never");
      await page.getByTestId("create-submit").click();
      const flash = await page.getByTestId("flash").filter({ hasText: /Created VM/ }).textContent({ timeout: 60_000 });
      vmId = /Created VM (\S+)/.exec(flash ?? "")?.[1];
      assert.ok(vmId, `created: ${flash}`);
      const row = page.locator(`tr[data-vm-id="${vmId}"]`);
      await row.and(page.locator('[data-state="running"]')).waitFor({ timeout: 30_000 });
      assert.match((await row.textContent()) ?? "", /base image.*never/);
      await screenshot(page, "console-vm-list.png");

      // Terminal: echo, then stty size before and after the window shrinks.
      await row.getByTestId("open-terminal").click();
      const term = page.getByTestId("terminal");
      await page.locator('[data-testid=terminal][data-state="connected"]').waitFor({ timeout: 30_000 });
      await waitForLines(page, (l) => l.some((x) => /[#$]$/.test(x)), "the shell prompt");
      await term.click();
      await page.keyboard.type("echo capsule-ok");
      await page.keyboard.press("Enter");
      await waitForLines(page, (l) => l.includes("capsule-ok"), "echo output");
      await page.keyboard.type("stty size");
      await page.keyboard.press("Enter");
      const before = (await waitForLines(page, (l) => l.some((x) => SIZE_RE.test(x)), "stty size")).filter((x) => SIZE_RE.test(x));
      const size1 = before[before.length - 1] as string;
      await screenshot(page, "console-terminal.png");
      await page.setViewportSize({ width: 900, height: 560 });
      await new Promise((r) => setTimeout(r, 500));
      await page.keyboard.type("stty size");
      await page.keyboard.press("Enter");
      const after = await waitForLines(page, (l) => l.filter((x) => SIZE_RE.test(x)).length >= 2, "second stty size");
      const size2 = after.filter((x) => SIZE_RE.test(x)).pop() as string;
      const [r1, c1] = (SIZE_RE.exec(size1) ?? []).slice(1).map(Number);
      const [r2, c2] = (SIZE_RE.exec(size2) ?? []).slice(1).map(Number);
      assert.ok(r2! < r1! && c2! < c1!, `stty size follows the window: ${size1} → ${size2}`);

      // Reload: the same session is re-attached and its scrollback replayed.
      const sessionId = await term.getAttribute("data-session-id");
      assert.ok(sessionId, "the session id is known");
      assert.match(page.url(), new RegExp(`session=${sessionId}`));
      await page.reload();
      await page.locator('[data-testid=terminal][data-state="connected"]').waitFor({ timeout: 30_000 });
      await waitForLines(page, (l) => l.includes("capsule-ok") && l.includes(size2), "replayed scrollback");
      assert.equal(await term.getAttribute("data-session-id"), sessionId);
      const listed = await call(url, keyA, "GET", `/v1/vms/${vmId}/pty/sessions`);
      assert.equal((listed.body.sessions as { sessionId: string }[]).filter((s) => s.sessionId === sessionId).length, 1, "no second session");
      await page.setViewportSize({ width: 1280, height: 800 });

      // Upload through the file browser, read back through the API.
      await page.goto(`${url}/console/#/vms/${vmId}/files?path=/root`);
      const content = `uploaded by the console ${Date.now()}\n`;
      await page.getByTestId("upload").setInputFiles({ name: "from-console.txt", mimeType: "text/plain", buffer: Buffer.from(content) });
      await page.locator('tr[data-file="from-console.txt"]').waitFor({ timeout: 30_000 });
      const read = await call(url, keyA, "GET", `/v1/vms/${vmId}/files/${encodeURIComponent("/root/from-console.txt")}`);
      assert.equal(read.status, 200);
      assert.equal(Buffer.from(String(read.body.content), "base64").toString("utf8"), content);

      // Delete with confirmation.
      await page.goto(`${url}/console/#/vms`);
      await row.getByTestId("delete").click();
      await page.getByTestId("confirm-ok").click();
      await row.waitFor({ state: "detached", timeout: 30_000 });
      assert.equal((await call(url, keyA, "GET", `/v1/vms/${vmId}`)).status, 404);
      vmId = undefined;
    } finally {
      await context.close();
      if (vmId) await call(url, keyA, "DELETE", `/v1/vms/${vmId}`);
    }
  });

  it("the Builds page: a snapshot links to its build, each phase's log, a failed build's reason and failed phase", { timeout: 120_000 }, async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, keyB } = t.get();
    const ok = await call(url, keyA, "POST", "/v1/vms/snapshots", { template: { additionalFiles: { "/etc/console-build": { content: "x" } } } });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const bad = await call(url, keyA, "POST", "/v1/vms/snapshots", { template: { systemd: { services: [{ name: "bad", mode: "oneshot", exec: ["echo console-broken-step >&2; exit 5"] }] } } });
    assert.equal(bad.body.code, "VM_SETUP_FAILED");
    assert.equal((await call(url, keyB, "GET", "/v1/vms/builds")).body.totalCount, 0, "another account lists none of them");
    const context = await (await b.get()).newContext({ viewport: { width: 1280, height: 800 } });
    try {
      const page = await context.newPage();
      await signIn(page, url, keyA);
      await page.goto(`${url}/console/#/snapshots`);
      await page.locator(`tr[data-snapshot-id="${String(ok.body.snapshotId)}"]`).getByTestId("snapshot-build").click();
      const phases = page.getByTestId("build-phases");
      await phases.waitFor({ timeout: 10_000 });
      assert.match(page.url(), new RegExp(`#/builds/${String(ok.body.buildId)}$`));
      assert.match((await phases.locator('details[data-phase="files"] summary').textContent()) ?? "", /files succeeded \d+\.\d s/);

      const failedRow = page.locator(`tr[data-build-id="${String(bad.body.buildId)}"]`);
      assert.match((await failedRow.getByTestId("failure-reason").textContent()) ?? "", /systemd/);
      await failedRow.locator("a").click();
      const failedPhase = page.locator('details[data-phase="systemd"][open]');
      await failedPhase.waitFor({ timeout: 10_000 });
      assert.match((await failedPhase.locator("pre").textContent()) ?? "", /console-broken-step/);
      await screenshot(page, "console-builds.png");
    } finally {
      await context.close();
    }
  });

  it("a VM's page: its services with their state and logs; stop and start from the console", { timeout: 120_000 }, async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA } = t.get();
    // Made through the API: a create with `systemd` starts the service before it answers.
    const created = await call(url, keyA, "POST", "/v1/vms", {
      idleTimeoutSeconds: null,
      systemd: { services: [{ name: "ticker", mode: "service", exec: ["echo tick-out; echo tick-err >&2; exec sleep 1000"] }] },
    });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const vmId = String(created.body.id);
    const context = await (await b.get()).newContext({ viewport: { width: 1280, height: 800 } });
    try {
      const page = await context.newPage();
      await signIn(page, url, keyA);
      await page.locator(`tr[data-vm-id="${vmId}"]`).getByTestId("open-vm").click();
      const row = page.locator('tr[data-service="ticker"]');
      await row.and(page.locator('[data-active-state="active"]')).waitFor({ timeout: 20_000 });
      assert.equal(await row.getByTestId("service-state").textContent(), "active (running)");

      await row.getByTestId("service-logs-open").click();
      const logLines = page.getByTestId("log-line");
      await logLines.filter({ hasText: "tick-err" }).waitFor({ timeout: 10_000 });
      const lines = await logLines.allTextContents();
      assert.ok(lines.some((l) => / tick-out$/.test(l)) && lines.some((l) => /Started \(pid \d+\)$/.test(l)), lines.join("\n"));
      assert.equal(await logLines.filter({ hasText: "tick-err" }).getAttribute("class"), "log-stderr");
      await screenshot(page, "console-vm-services.png");

      await row.getByTestId("service-stop").click();
      await row.and(page.locator('[data-active-state="inactive"]')).waitFor({ timeout: 20_000 });
      assert.match((await page.getByTestId("service-flash").textContent()) ?? "", /ticker: inactive \(dead\)/);
      const status = await call(url, keyA, "GET", `/v1/vms/${vmId}/systemd/services/ticker/status`);
      assert.deepEqual([status.body.activeState, status.body.subState], ["inactive", "dead"]);
      // The log is read again on Refresh: the supervisor's stop line appears.
      assert.equal(await logLines.filter({ hasText: "Stopped" }).count(), 0);
      await page.getByTestId("logs-refresh").click();
      await logLines.filter({ hasText: "Stopped" }).waitFor({ timeout: 10_000 });

      await row.getByTestId("service-start").click();
      await row.and(page.locator('[data-active-state="active"]')).waitFor({ timeout: 20_000 });
      assert.equal((await call(url, keyA, "GET", `/v1/vms/${vmId}/systemd/services/ticker/status`)).body.activeState, "active");
    } finally {
      await context.close();
      await call(url, keyA, "DELETE", `/v1/vms/${vmId}`);
    }
  });

  it("a VM's page: its public and shared ports link to their previews through the console's handoff; a field opens any port", { timeout: 90_000 }, async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, keyB, server } = t.get();
    const vmId = String((await call(url, keyA, "POST", "/v1/vms", { idleTimeoutSeconds: null })).body.id);
    const previewOf = (port: number) => `http://${port}-${vmId}.localhost:${server.port}/`;
    const viaConsole = (port: number) => `/console/preview?to=${encodeURIComponent(previewOf(port))}`;
    try {
      await call(url, keyA, "PUT", `/v1/vms/${vmId}/ports/3000/public`, { public: true });
      const share = await call(url, keyA, "POST", `/v1/vms/${vmId}/ports/5173/shares`, { ttlSeconds: 600 });
      // The API behind the panel: the opened ports, and one port's live shares (ids to revoke).
      const listed = await call(url, keyA, "GET", `/v1/vms/${vmId}/ports`);
      assert.deepEqual(
        (listed.body.ports as Array<{ port: number; public: boolean; shares: unknown[] }>).map((p) => [p.port, p.public, p.shares.length]),
        [
          [3000, true, 0],
          [5173, false, 1],
        ],
      );
      assert.deepEqual((await call(url, keyA, "GET", `/v1/vms/${vmId}/ports/5173/shares`)).body.shares, [{ id: share.body.id, port: 5173, expiresAt: share.body.expiresAt }]);
      assert.equal((await call(url, keyB, "GET", `/v1/vms/${vmId}/ports`)).body.code, "VM_NOT_FOUND");
      const context = await (await b.get()).newContext({ viewport: { width: 1280, height: 800 } });
      try {
        const page = await context.newPage();
        await signIn(page, url, keyA);
        await page.locator(`tr[data-vm-id="${vmId}"]`).getByTestId("open-vm").click();
        const pub = page.getByTestId("port-3000");
        await pub.waitFor({ timeout: 15_000 });
        assert.equal(await pub.getAttribute("href"), viaConsole(3000));
        assert.equal(await pub.textContent(), previewOf(3000));
        assert.equal(await page.getByTestId("port-5173").getAttribute("href"), viaConsole(5173));
        assert.match((await page.getByTestId("ports").textContent()) ?? "", /public.*private · 1 live share/s);
        await screenshot(page, "console-vm-ports.png");
        await page.getByTestId("open-port").fill("8080");
        const opened = page.waitForRequest((r) => r.url().endsWith(viaConsole(8080)), { timeout: 15_000 });
        await page.getByTestId("open-port-go").click();
        await opened;
      } finally {
        await context.close();
      }
    } finally {
      await call(url, keyA, "DELETE", `/v1/vms/${vmId}`);
    }
  });

  it("wrong and revoked keys, CSRF header, PTY tokens, sign-out, and tenant isolation", { timeout: 240_000 }, async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, keyB, server } = t.get();
    const browser = await b.get();
    const ws = url.replace(/^http/, "ws");
    const created = await call(url, keyA, "POST", "/v1/vms", { idleTimeoutSeconds: null });
    const vmA = String(created.body.id);
    const contexts = await Promise.all([1, 2, 3, 4].map(() => browser.newContext()));
    const [wrong, ctxB, ctxC, ctxA] = contexts as [(typeof contexts)[0], (typeof contexts)[0], (typeof contexts)[0], (typeof contexts)[0]];
    try {
      // A wrong key: refused, no cookie, no data, no socket.
      const pw = await wrong.newPage();
      await signIn(pw, url, `cap_aaaaaaaaaaaa_${"x".repeat(43)}`);
      await pw.getByTestId("sign-in-error").waitFor();
      assert.equal((await wrong.cookies()).length, 0);
      assert.equal((await pageFetch(pw, "GET", "/v1/vms")).status, 401);
      assert.equal((await pageFetch(pw, "POST", "/console/api/pty-token", { vmId: vmA })).status, 401);
      assert.equal((await tryWebSocket(`${ws}/v1/vms/${vmA}/pty?token=${"y".repeat(43)}`)).status, 401);
      assert.equal((await tryWebSocket(`${ws}/v1/vms/${vmA}/pty?token=${encodeURIComponent(keyA)}`)).status, 401, "a key is not a token");

      // Account B never sees A's VM.
      const pb = await ctxB.newPage();
      await signIn(pb, url, keyB);
      await pb.getByTestId("account").filter({ hasText: "bob" }).waitFor();
      await pb.getByText("No VMs yet.").waitFor();
      assert.equal(await pb.locator(`tr[data-vm-id="${vmA}"]`).count(), 0);
      const listB = await pageFetch(pb, "GET", "/v1/vms");
      assert.deepEqual(listB.body.vms, []);
      assert.equal((await pageFetch(pb, "GET", `/v1/vms/${vmA}`)).status, 404);
      assert.equal((await pageFetch(pb, "POST", "/console/api/pty-token", { vmId: vmA })).status, 404);
      // The cookie alone (what a cross-site form would carry) is not enough.
      assert.equal((await pageFetch(pb, "GET", "/v1/vms", undefined, false)).status, 401);
      assert.equal((await pageFetch(pb, "POST", "/console/api/pty-token", { vmId: vmA }, false)).status, 403);

      // A's console: a PTY token works once, on its VM only.
      const pa = await ctxA.newPage();
      await signIn(pa, url, keyA);
      await pa.locator(`tr[data-vm-id="${vmA}"]`).waitFor();
      const tok = String((await pageFetch(pa, "POST", "/console/api/pty-token", { vmId: vmA })).body.token);
      const first = await tryWebSocket(`${ws}/v1/vms/${vmA}/pty?cols=80&rows=24&token=${tok}`);
      assert.equal(first.status, 101);
      assert.match(first.first ?? "", /sessionInfo/);
      assert.equal((await tryWebSocket(`${ws}/v1/vms/${vmA}/pty?token=${tok}`)).status, 401, "single use");
      const tok2 = String((await pageFetch(pa, "POST", "/console/api/pty-token", { vmId: vmA })).body.token);
      assert.equal((await tryWebSocket(`${ws}/v1/vms/${vmA}/exec-stream?command=id&token=${tok2}`)).status, 401, "PTY routes only");
      // Sign-out revokes the session server-side: the old cookie is dead.
      const cookieA = (await ctxA.cookies()).find((c) => c.name === "capsule_console")?.value;
      assert.ok(cookieA);
      const tok3 = String((await pageFetch(pa, "POST", "/console/api/pty-token", { vmId: vmA })).body.token);
      await pa.getByTestId("sign-out").click();
      await pa.getByTestId("api-key").waitFor();
      const replay = await fetch(`${url}/v1/vms`, { headers: { cookie: `capsule_console=${cookieA}`, "x-capsule-console": "1" } });
      assert.equal(replay.status, 401);
      assert.equal((await tryWebSocket(`${ws}/v1/vms/${vmA}/pty?token=${tok3}`)).status, 401, "tokens die with their session");

      // A revoked key: its console session ends, its unused token too, and the page asks to sign in again.
      const keyC = server.keys.createKey("alice").key;
      const pc = await ctxC.newPage();
      await signIn(pc, url, keyC);
      await pc.locator(`tr[data-vm-id="${vmA}"]`).waitFor();
      const tokC = String((await pageFetch(pc, "POST", "/console/api/pty-token", { vmId: vmA })).body.token);
      assert.ok(server.keys.revokeKey(keyC));
      assert.equal((await pageFetch(pc, "GET", "/v1/vms")).status, 401);
      assert.equal((await tryWebSocket(`${ws}/v1/vms/${vmA}/pty?token=${tokC}`)).status, 401);
      await pc.reload();
      await pc.getByTestId("api-key").waitFor();
      await signIn(pc, url, keyC);
      await pc.getByTestId("sign-in-error").waitFor();
    } finally {
      await Promise.all(contexts.map((c) => c.close()));
      await call(url, keyA, "DELETE", `/v1/vms/${vmA}`);
    }
  });
});

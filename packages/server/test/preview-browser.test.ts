/**
 * Preview URLs in Debian's Chromium against a real server and a real VM: a dev-server-like app
 * (an HTML page whose WebSocket the VM pushes a message on) opened at its `*.localhost` preview
 * URL through a share link (the link's token leaves the address bar; the host gets its own
 * HttpOnly, host-only cookie); without credentials and with another account's key the preview
 * refuses; the link stops working when it expires and when it is revoked; a public port opens
 * for anyone; a console session opens it through the console's one-time handoff, and the
 * console's cookie never reaches the preview host; a preview page can neither read its own auth cookie nor plant one for the console's
 * host (`domain=localhost`).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Page } from "playwright-core";
import { signIn, useBrowser } from "../test-support/browser.js";
import { call, useServer } from "../test-support/harness.js";
import { APP_PATH, DEV_APP, WS_GREETING, startAppCommand } from "../test-support/preview-app.js";

const APP_PORT = 5173;
/** Long enough to open the page and its WebSocket on a busy host, short enough to wait out. */
const SHORT_TTL_SECONDS = 8;

async function text(page: Page, selector: string, want: string): Promise<void> {
  // A string, evaluated in the page (this package's types have no DOM).
  await page.waitForFunction(`document.querySelector(${JSON.stringify(selector)})?.textContent === ${JSON.stringify(want)}`, undefined, { timeout: 15_000 });
}

describe("preview in Chromium", () => {
  const t = useServer();
  const b = useBrowser();

  it("a share link opens the dev app and its WebSocket; no key, another account's key, an expired or revoked link refuse", { timeout: 120_000 }, async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, keyB, server } = t.get();
    const created = await call(url, keyA, "POST", "/v1/vms", {});
    const vmId = created.body.id as string;
    await server.engine.guest.writeFile(vmId, APP_PATH, DEV_APP);
    const started = await server.engine.guest.exec(vmId, { command: startAppCommand(APP_PORT) });
    assert.equal(started.exitCode, 0, started.stdout + started.stderr);
    const previewUrl = `http://${APP_PORT}-${vmId}.localhost:${server.port}/`;
    const browser = await b.get();

    const anon = await browser.newContext();
    const bob = await browser.newContext({ extraHTTPHeaders: { authorization: `Bearer ${keyB}` } });
    const shared = await browser.newContext();
    const revocable = await browser.newContext();
    try {
      for (const [who, context] of [["no credentials", anon], ["another account's key", bob]] as const) {
        const page = await context.newPage();
        const res = await page.goto(previewUrl);
        assert.equal(res?.status(), 401, who);
        assert.match(await page.locator("h1").innerText(), /This preview is private/, who);
      }

      const share = await call(url, keyA, "POST", `/v1/vms/${vmId}/ports/${APP_PORT}/shares`, { ttlSeconds: SHORT_TTL_SECONDS });
      assert.equal(share.status, 200, JSON.stringify(share.body));
      const link = share.body.url as string;
      assert.ok(link.startsWith(`${previewUrl}?capsule_share=`), link);
      const page = await shared.newPage();
      const res = await page.goto(link);
      assert.equal(res?.status(), 200);
      assert.equal(page.url(), previewUrl, "the token left the address bar");
      await text(page, "#msg", WS_GREETING);
      await text(page, "#echo", "echo:ping");
      const cookies = await shared.cookies(previewUrl);
      const cookie = cookies.find((c) => c.name === "capsule_preview");
      assert.ok(cookie, "the preview host got its cookie");
      assert.equal(cookie.httpOnly, true);
      assert.equal(cookie.sameSite, "Lax");
      assert.equal(cookie.domain, `${APP_PORT}-${vmId}.localhost`, "host-only: no Domain attribute");
      assert.equal(await page.evaluate(`document.cookie.includes("capsule_preview")`), false, "page scripts cannot read it");

      // Cookie isolation: a preview page cannot plant a cookie for the console's host (localhost):
      // Chromium refuses Domain=localhost from a subdomain, as it does for a public suffix.
      await page.evaluate(`document.cookie = "capsule_console=planted-by-preview; domain=localhost; path=/"`);
      const planted = (await shared.cookies(`http://localhost:${server.port}/console/`)).filter((c) => c.name === "capsule_console");
      assert.deepEqual(planted, [], "no console cookie planted from a preview page");

      // Expiry: the same browser, after the link's time.
      const expiresAt = Date.parse(share.body.expiresAt as string);
      await new Promise((r) => setTimeout(r, Math.max(0, expiresAt - Date.now()) + 500));
      const expired = await page.reload();
      assert.equal(expired?.status(), 401, "an expired share no longer opens the preview");

      // Revocation: a long link works, then stops the moment it is revoked.
      const long = await call(url, keyA, "POST", `/v1/vms/${vmId}/ports/${APP_PORT}/shares`, { ttlSeconds: 3600 });
      const rpage = await revocable.newPage();
      assert.equal((await rpage.goto(long.body.url as string))?.status(), 200);
      await text(rpage, "#msg", WS_GREETING);
      const revoked = await call(url, keyA, "DELETE", `/v1/vms/${vmId}/ports/${APP_PORT}/shares/${long.body.id as string}`);
      assert.equal(revoked.status, 200);
      assert.equal((await rpage.reload())?.status(), 401, "a revoked share no longer opens the preview");
      assert.equal((await call(url, keyB, "DELETE", `/v1/vms/${vmId}/ports/${APP_PORT}/shares/${long.body.id as string}`)).body.code, "VM_NOT_FOUND", "another account cannot touch the shares");

      // A port made public opens for anyone.
      assert.equal((await call(url, keyA, "PUT", `/v1/vms/${vmId}/ports/${APP_PORT}/public`, { public: true })).status, 200);
      const apage = await anon.newPage();
      assert.equal((await apage.goto(previewUrl))?.status(), 200);
      await text(apage, "#msg", WS_GREETING);
      assert.equal((await call(url, keyA, "PUT", `/v1/vms/${vmId}/ports/${APP_PORT}/public`, { public: false })).body.public, false);
      assert.equal((await apage.reload())?.status(), 401);
    } finally {
      for (const c of [anon, bob, shared, revocable]) await c.close();
    }
  });

  it("a console session opens a private preview through the console's handoff; the console cookie stays on the console's host", { timeout: 90_000 }, async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, server } = t.get();
    const vmId = (await call(url, keyA, "POST", "/v1/vms", {})).body.id as string;
    await server.engine.guest.writeFile(vmId, APP_PATH, DEV_APP);
    assert.equal((await server.engine.guest.exec(vmId, { command: startAppCommand(APP_PORT) })).exitCode, 0);
    const previewUrl = `http://${APP_PORT}-${vmId}.localhost:${server.port}/`;
    const context = await (await b.get()).newContext();
    try {
      const page = await context.newPage();
      await signIn(page, `http://localhost:${server.port}`, keyA);
      await page.getByTestId("sign-out").waitFor({ timeout: 15_000 });
      assert.equal((await page.goto(previewUrl))?.status(), 401, "the console cookie does not open the preview by itself");
      await page.getByText("Open it from the Capsule console").click();
      await page.waitForURL(previewUrl, { timeout: 15_000 });
      await text(page, "#msg", WS_GREETING);
      const names = (await context.cookies(previewUrl)).map((c) => c.name);
      assert.ok(names.includes("capsule_preview"), "the preview host got its own cookie");
      assert.ok(!names.includes("capsule_console"), "the console cookie never reaches the preview host");
      // A handoff token is single-use.
      const handoffs: string[] = [];
      page.on("request", (r) => {
        if (r.url().includes("capsule_handoff=")) handoffs.push(r.url());
      });
      await context.clearCookies({ name: "capsule_preview" });
      await page.goto(`http://localhost:${server.port}/console/preview?to=${encodeURIComponent(previewUrl)}`);
      await page.waitForURL(previewUrl, { timeout: 15_000 });
      assert.equal(handoffs.length, 1);
      const fresh = await (await b.get()).newContext();
      try {
        assert.equal((await (await fresh.newPage()).goto(handoffs[0] as string))?.status(), 401, "a spent handoff opens nothing");
      } finally {
        await fresh.close();
      }
    } finally {
      await context.close();
    }
  });
});

/** A preview domain that is not localhost, mapped to loopback in Chromium; the API answers on its bare name. */
const TOSS_DOMAIN = "capsule.test";

describe("cookie tossing from a preview page (preview domain capsule.test, the console on its bare name)", () => {
  const t = useServer({ previewDomain: TOSS_DOMAIN });
  const b = useBrowser([`--host-resolver-rules=MAP ${TOSS_DOMAIN} 127.0.0.1, MAP *.${TOSS_DOMAIN} 127.0.0.1`]);

  it("a console cookie tossed for the parent domain never stands in for the user's session", { timeout: 90_000 }, async (ctx) => {
    if (t.skip()) return ctx.skip(String(t.skip()));
    const { url, keyA, keyB, server } = t.get();
    const vmId = (await call(url, keyA, "POST", "/v1/vms", {})).body.id as string;
    await server.engine.guest.writeFile(vmId, APP_PATH, DEV_APP);
    assert.equal((await server.engine.guest.exec(vmId, { command: startAppCommand(APP_PORT) })).exitCode, 0);
    const consoleBase = `http://${TOSS_DOMAIN}:${server.port}`;
    // The attacker's own console session (bob's), which their preview page plants in the victim's browser.
    const bobSignIn = await fetch(`${url}/console/api/session`, { method: "POST", headers: { "content-type": "application/json", "x-capsule-console": "1" }, body: JSON.stringify({ key: keyB }) });
    const bobSession = /capsule_console=([^;]+)/.exec(bobSignIn.headers.get("set-cookie") ?? "")?.[1];
    assert.ok(bobSession, "bob signed in");
    const share = await call(url, keyA, "POST", `/v1/vms/${vmId}/ports/${APP_PORT}/shares`, { ttlSeconds: 600 });
    const link = new URL(share.body.url as string);
    const previewUrl = `http://${APP_PORT}-${vmId}.${TOSS_DOMAIN}:${server.port}/${link.search}`;
    const context = await (await b.get()).newContext();
    try {
      const page = await context.newPage();
      await signIn(page, consoleBase, keyA);
      await page.getByTestId("sign-out").waitFor({ timeout: 15_000 });
      const session = () => page.evaluate(`fetch("/console/api/session", { headers: { "x-capsule-console": "1" } }).then(async (r) => [r.status, await r.text()])`) as Promise<[number, string]>;
      assert.equal((await session())[0], 200, "alice is signed in");

      const preview = await context.newPage();
      assert.equal((await preview.goto(previewUrl))?.status(), 200);
      // What a hostile page on the preview host can do: a cookie for the parent domain, with a longer path (sent first).
      await preview.evaluate(`document.cookie = "capsule_console=${bobSession}; domain=${TOSS_DOMAIN}; path=/console"`);
      const tossed = (await context.cookies(`${consoleBase}/console/`)).filter((c) => c.name === "capsule_console");
      assert.equal(tossed.length, 2, "Chromium took the tossed cookie: the console's host now gets two");

      const [status, body] = await session();
      assert.equal(status, 401, `a doubled session cookie is refused, not taken as bob's: ${body}`);
      assert.doesNotMatch(body, /bob/);
    } finally {
      await context.close();
    }
  });
});

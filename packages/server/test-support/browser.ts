/**
 * Browser fixtures for the web console tests: Debian's Chromium driven by playwright-core
 * (`CAPSULE_CHROMIUM` overrides the path). `chromium.launch` gives every run a fresh temporary
 * profile and removes it on close; `useBrowser` closes the browser in `after`, pass or fail.
 * Screenshots go to `test-artifacts/` at the repository root (gitignored).
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after } from "node:test";
import { chromium, type Browser, type Page } from "playwright-core";
import WebSocket from "ws";

export const CHROMIUM = process.env.CAPSULE_CHROMIUM ?? "/usr/bin/chromium";
export const ARTIFACTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../../test-artifacts");
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

/** `extraArgs`: more Chromium flags (e.g. `--host-resolver-rules` to map test names to loopback). */
export function useBrowser(extraArgs: readonly string[] = []): { get: () => Promise<Browser> } {
  let browser: Browser | undefined;
  after(async () => {
    await browser?.close();
  });
  return {
    get: async () => {
      if (!fs.existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: apt-get install chromium (scripts/test.sh installs it)`);
      browser ??= await chromium.launch({ executablePath: CHROMIUM, args: [...FLAGS, ...extraArgs], timeout: 60_000 });
      return browser;
    },
  };
}

export async function screenshot(page: Page, name: string): Promise<string> {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, name);
  await page.screenshot({ path: file });
  return file;
}

/** The terminal's rendered text (xterm's DOM renderer), one line per row, trailing blanks trimmed. */
export async function terminalLines(page: Page): Promise<string[]> {
  const text = await page.locator("[data-testid=terminal] .xterm-rows").innerText();
  return text.split("\n").map((l) => l.replace(/\u00a0/g, " ").trimEnd());
}

export async function waitForLines(page: Page, pred: (lines: string[]) => boolean, what: string, timeoutMs = 20_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let lines: string[] = [];
  while (Date.now() < deadline) {
    lines = await terminalLines(page);
    if (pred(lines)) return lines;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}; terminal:\n${lines.filter(Boolean).join("\n")}`);
}

/** Signs a page in with an API key through the form. */
export async function signIn(page: Page, base: string, key: string): Promise<void> {
  await page.goto(`${base}/console/`);
  await page.getByTestId("api-key").fill(key);
  await page.getByTestId("sign-in").click();
}

/** Calls the console API from inside the page (its cookie, optionally without the CSRF header). */
export async function pageFetch(page: Page, method: string, p: string, body?: unknown, consoleHeader = true): Promise<{ status: number; body: Record<string, unknown> }> {
  return page.evaluate(
    async ({ method, p, body, consoleHeader }) => {
      const headers: Record<string, string> = {};
      if (consoleHeader) headers["X-Capsule-Console"] = "1";
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const res = await fetch(p, { method, headers, credentials: "same-origin", ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
      const text = await res.text();
      let parsed: Record<string, unknown> = {};
      try {
        parsed = JSON.parse(text) as Record<string, unknown>;
      } catch {
        parsed = { text };
      }
      return { status: res.status, body: parsed };
    },
    { method, p, body, consoleHeader },
  );
}

/** Opens a WebSocket from Node; answers the HTTP status of a refused upgrade, or 101 and the first text frame. */
export function tryWebSocket(url: string): Promise<{ status: number; first?: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no answer from ${url}`));
    }, 20_000);
    ws.on("unexpected-response", (_req, res) => {
      clearTimeout(timer);
      res.resume();
      resolve({ status: res.statusCode ?? 0 });
      ws.terminate();
    });
    ws.on("message", (data, isBinary) => {
      if (isBinary) return;
      clearTimeout(timer);
      resolve({ status: 101, first: Buffer.from(data as Buffer).toString("utf8") });
      ws.close();
    });
    ws.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

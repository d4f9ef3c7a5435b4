/** The preview proxy's pure parts: which host goes where, and what crosses to the VM and back. */
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { openDb } from "../src/db.js";
import { KeyStore } from "../src/keys.js";
import { PreviewAccess } from "../src/preview/access.js";
import { Rows } from "../src/vms/rows.js";
import { readCookie } from "../src/console/auth.js";
import { requestHeadersForVm, responseHeadersForClient, setCookieName, setsOwnCookie, withoutCookies, withoutQueryParams } from "../src/preview/forward-headers.js";
import { checkHostNames, HostRouter, hostnameOf, isWithin } from "../src/preview/host.js";
import { startServer } from "../src/server.js";
import { ShareSigner } from "../src/preview/share-token.js";
import { DEFAULT_DOMAIN_VM_PORT, MAX_DOMAINS_PER_ACCOUNT, checkDomains } from "../src/vms/domains.js";
import { MAX_LIVE_SHARES_PER_ACCOUNT } from "../src/vms/preview-rows.js";

test("Host parsing: preview hosts, other names, and what stays the API's", () => {
  const r = new HostRouter({ previewDomain: "localhost", apiHostnames: [], domainSuffixes: ["example.com"] });
  assert.deepEqual(r.route("5173-abc123.localhost:8080"), { kind: "preview", vmId: "abc123", port: 5173 });
  assert.deepEqual(r.route("5173-ABC123.LOCALHOST."), { kind: "preview", vmId: "abc123", port: 5173 }, "case and a trailing dot do not matter");
  assert.deepEqual(r.route("1-a.localhost"), { kind: "preview", vmId: "a", port: 1 });
  assert.deepEqual(r.route("65535-a.localhost"), { kind: "preview", vmId: "a", port: 65535 });
  for (const h of ["65536-a.localhost", "0-a.localhost", "05173-a.localhost", "5173-.localhost", "5173-a_b.localhost", "x.5173-a.localhost", "localhost:8080", "localhost", "foo.localhost"]) {
    assert.equal(r.route(h), undefined, `${h} is the API's`);
  }
  for (const h of [undefined, "", "127.0.0.1:8080", "[::1]:8080", "bad host", "a..b"]) {
    const route = r.route(h);
    assert.ok(route === undefined || (route.kind === "other" && h === "127.0.0.1:8080"), `${String(h)}: ${JSON.stringify(route)}`);
  }
  assert.deepEqual(r.route("app.example.com:8080"), { kind: "other", hostname: "app.example.com" });
  const custom = new HostRouter({ previewDomain: "preview.example.com", apiHostnames: [], domainSuffixes: ["localhost", "previewxexample.com"] });
  assert.deepEqual(custom.route("3000-vm1.preview.example.com"), { kind: "preview", vmId: "vm1", port: 3000 });
  assert.equal(custom.route("3000-vm1.previewxexample.com")?.kind, "other", "dots in the domain are literal");
  assert.equal(custom.route("3000-vm1.localhost")?.kind, "other");
  assert.equal(hostnameOf("Example.COM:443"), "example.com");
  assert.ok(isWithin("a.b.example.com", "example.com") && isWithin("example.com", "example.com") && !isWithin("badexample.com", "example.com"));
  assert.equal(r.previewUrl(new URL("http://localhost:8080"), "abc", 5173), "http://5173-abc.localhost:8080/");
  assert.equal(custom.previewUrl(new URL("https://api.example.com"), "abc", 80), "https://80-abc.preview.example.com/");
});

const ctx = { remoteAddress: "127.0.0.1", proto: "http", ownCookies: ["capsule_preview", "capsule_console"], upgrade: false };

test("request headers: hop-by-hop and Capsule's credentials stay here; X-Forwarded-* are set", () => {
  const out = requestHeadersForVm(
    {
      host: "5173-a.localhost:8080",
      connection: "keep-alive, X-Secret-Hop",
      "x-secret-hop": "1",
      "keep-alive": "timeout=5",
      te: "trailers",
      "transfer-encoding": "chunked",
      "proxy-authorization": "Basic x",
      upgrade: "websocket",
      authorization: "Bearer cap_abc123def456_SECRET",
      cookie: "a=1; capsule_preview=p; b=2; capsule_console=c",
      "x-forwarded-for": "203.0.113.9",
      "x-forwarded-proto": "https",
      accept: "text/html",
    },
    ctx,
  );
  assert.deepEqual(out, { host: "5173-a.localhost:8080", cookie: "a=1; b=2", accept: "text/html", "transfer-encoding": "chunked", "x-forwarded-for": "203.0.113.9, 127.0.0.1", "x-forwarded-host": "5173-a.localhost:8080", "x-forwarded-proto": "http" });
  assert.equal(requestHeadersForVm({ "transfer-encoding": "gzip, chunked" }, ctx)["transfer-encoding"], "chunked", "a decoded chunked body is framed again");
  assert.equal(requestHeadersForVm({ "content-length": "3" }, ctx)["transfer-encoding"], undefined);
  // The app's own Authorization (not a Capsule key) is the app's.
  assert.equal(requestHeadersForVm({ authorization: "Bearer app-token" }, ctx).authorization, "Bearer app-token");
  assert.equal(requestHeadersForVm({ authorization: "Basic dXNlcjpwdw==" }, ctx).authorization, "Basic dXNlcjpwdw==");
  assert.equal(requestHeadersForVm({ cookie: "capsule_preview=x" }, ctx).cookie, undefined, "a Cookie of only Capsule's is dropped");
  // An upgrade keeps its Connection and Upgrade.
  const up = requestHeadersForVm({ connection: "Upgrade", upgrade: "websocket", "sec-websocket-key": "k" }, { ...ctx, upgrade: true });
  assert.equal(up.connection, "upgrade");
  assert.equal(up.upgrade, "websocket");
  assert.equal(up["sec-websocket-key"], "k");
});

test("response headers: hop-by-hop dropped, repeated headers kept in order, Capsule's cookies never set by a VM", () => {
  const out = responseHeadersForClient(
    ["Content-Type", "text/html", "Connection", "close, X-Hop", "X-Hop", "1", "Transfer-Encoding", "chunked", "Set-Cookie", "a=1", "Set-Cookie", " capsule_preview=forged; Path=/", "Set-Cookie", "b=2", "Keep-Alive", "timeout=5"],
    ["capsule_preview"],
  );
  assert.deepEqual(out, [
    ["Content-Type", "text/html"],
    ["Set-Cookie", "a=1"],
    ["Set-Cookie", "b=2"],
  ]);
});

test("cookie and query filtering", () => {
  assert.equal(withoutCookies("x=1;capsule_preview=2;  y=3", ["capsule_preview"]), "x=1; y=3");
  assert.equal(withoutCookies(undefined, ["a"]), undefined);
  assert.equal(withoutQueryParams("/p?a=1&capsule_share=t&b=2", ["capsule_share"]), "/p?a=1&b=2");
  assert.equal(withoutQueryParams("/p?capsule_share=t", ["capsule_share"]), "/p");
  assert.equal(withoutQueryParams("/p?a=%2F", ["capsule_share"]), "/p?a=%2F", "a query without the token is left byte for byte");
  assert.equal(withoutQueryParams("/p", ["capsule_share"]), "/p");
});

test("a tenant's domain never shadows the API: no claimable suffix, no domain routing; API names are the API's; overlapping configs refused", () => {
  const names = { previewDomain: "preview.example.com", apiHostnames: ["127.0.0.1", "capsule.example.com"], domainSuffixes: [] as string[] };
  const off = new HostRouter(names);
  for (const h of ["capsule.example.com", "app.example.org", "127.0.0.1:8080"]) assert.equal(off.route(h), undefined, `${h}: no suffix configured, so the API's`);
  const on = new HostRouter({ ...names, domainSuffixes: ["apps.example.org"] });
  assert.deepEqual(on.route("x.apps.example.org:8080"), { kind: "other", hostname: "x.apps.example.org" });
  assert.equal(on.route("capsule.example.com"), undefined, "an API host name is never looked up as a domain");
  assert.equal(on.route("x.example.org"), undefined, "outside the suffixes: the API's (a row from an older config included)");
  const apiUnderSuffix = new HostRouter({ ...names, domainSuffixes: ["example.com"] });
  assert.equal(apiUnderSuffix.route("capsule.example.com"), undefined, "even were the config let through");
  assert.doesNotThrow(() => checkHostNames({ ...names, domainSuffixes: ["apps.example.org"] }));
  for (const suffix of ["example.com", "capsule.example.com", "apps.capsule.example.com"]) {
    assert.throws(() => checkHostNames({ ...names, domainSuffixes: [suffix] }), /overlaps the claimable domain suffix/, suffix);
  }
  // With no suffix configured, any claim is refused with a reason the client shows.
  assert.throws(
    () => checkDomains([{ domain: "capsule.example.com" }], names),
    (e: Error & { code?: string }) => e.code === "CREATE_VM_BAD_REQUEST" && /domains are off on this server/.test(e.message),
  );
  assert.deepEqual(checkDomains([], names), [], "a create without domains is untouched");
  // The API's own name is reserved, also under a suffix that (wrongly) covers it.
  assert.throws(() => checkDomains([{ domain: "capsule.example.com" }], { ...names, domainSuffixes: ["example.com"] }), /reserved/);
});

test("startServer refuses a config where an API host name falls under a claimable suffix", async () => {
  await assert.rejects(startServer({ dataDir: "/nonexistent/capsule-host-check", host: "127.0.0.1", apiHostnames: ["capsule.example.com"], domainSuffixes: ["example.com"] }), /overlaps the claimable domain suffix example\.com/);
});

test("domains a create may claim: DNS names, not reserved, under an allowed suffix, each once", () => {
  const policy = { previewDomain: "preview.example.com", apiHostnames: ["api.example.com"], domainSuffixes: ["example.org", "example.com"] };
  assert.deepEqual(checkDomains([{ domain: "App.Example.ORG." }, { domain: "b.example.org", vmPort: 3000 }], policy), [
    { domain: "app.example.org", vmPort: DEFAULT_DOMAIN_VM_PORT },
    { domain: "b.example.org", vmPort: 3000 },
  ]);
  for (const bad of ["localhost", "a.localhost", "preview.example.com", "5173-x.preview.example.com", "api.example.com", "10.0.0.1", "bad_name.com", "-a.com", "a..com"]) {
    assert.throws(() => checkDomains([{ domain: bad }], policy), (e: Error & { code?: string }) => e.code === "CREATE_VM_BAD_REQUEST", bad);
  }
  assert.throws(() => checkDomains([{ domain: "a.example.org" }, { domain: "A.example.org" }], policy), /listed twice/);
  const limited = { ...policy, domainSuffixes: ["apps.example.net"] };
  assert.equal(checkDomains([{ domain: "x.apps.example.net" }], limited).length, 1);
  assert.equal(checkDomains([{ domain: "apps.example.net" }], limited).length, 1);
  assert.throws(() => checkDomains([{ domain: "xapps.example.net" }], limited), /not under a domain/);
});

test("share tokens: genuine for their VM port until they expire; altered, foreign or expired ones are nothing", () => {
  const signer = new ShareSigner(Buffer.alloc(32, 1));
  const claim = { id: "0123456789abcdef", vmId: "vm1", port: 5173, expiresAt: 2_000_000 };
  const token = signer.sign(claim);
  assert.deepEqual(signer.verify(token, "vm1", 5173, 1_999_999), { id: claim.id, expiresAt: claim.expiresAt });
  assert.equal(signer.verify(token, "vm1", 5173, 2_000_000), undefined, "expired at its expiry");
  assert.equal(signer.verify(token, "vm2", 5173, 0), undefined, "another VM");
  assert.equal(signer.verify(token, "vm1", 5174, 0), undefined, "another port");
  const [id, exp, mac] = token.split(".") as [string, string, string];
  assert.equal(signer.verify(`${id}.${Number(exp) + 1000}.${mac}`, "vm1", 5173, 0), undefined, "a longer expiry is not signed");
  assert.equal(signer.verify(`fedcba9876543210.${exp}.${mac}`, "vm1", 5173, 0), undefined, "another share id is not signed");
  assert.equal(signer.verify(token, "vm1", 5173, 0) !== undefined, true);
  assert.equal(new ShareSigner(Buffer.alloc(32, 2)).verify(token, "vm1", 5173, 0), undefined, "another server's secret");
  for (const junk of [undefined, "", "x", `${token}x`, token.replace(/\./g, "-")]) assert.equal(signer.verify(junk, "vm1", 5173, 0), undefined, String(junk));
  assert.throws(() => new ShareSigner(Buffer.alloc(16)), /at least 32 bytes/);
});

test("grants of live preview connections: a revoked share, a port made private, a revoked key are withdrawn (and told at once)", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "capsule-grants-"));
  const db = openDb(path.join(dir, "server.db"));
  try {
    const keys = new KeyStore(db);
    const made = keys.createKey("alice");
    const rows = new Rows(db);
    rows.insertVm({ id: "vm1", account_id: made.info.accountId, name: null, idle_timeout_seconds: null, activity_threshold_bytes: 0, created_at: new Date().toISOString() });
    const access = new PreviewAccess(new HostRouter({ previewDomain: "localhost", apiHostnames: [], domainSuffixes: [] }), rows.preview, new ShareSigner(Buffer.alloc(32, 1)), keys);
    let told = 0;
    access.onWithdrawn(() => told++);
    const share = access.share(made.info.accountId, "vm1", 3000, 60, new URL("http://localhost:8080"));
    const grant = { kind: "share", shareId: share.id } as const;
    assert.equal(access.stillGranted(grant, "vm1", 3000), true);
    assert.equal(access.stillGranted(grant, "vm1", 3001), false, "a share is for its port");
    assert.equal(access.revokeShare("vm1", share.id), true);
    assert.equal(told, 1, "a revocation is told at once");
    assert.equal(access.stillGranted(grant, "vm1", 3000), false);
    assert.equal(access.revokeShare("vm1", share.id), false, "no live share left");
    access.setPublic("vm1", 3000, true);
    assert.equal(access.stillGranted({ kind: "public" }, "vm1", 3000), true);
    assert.equal(told, 1, "opening a port withdraws nothing");
    access.setPublic("vm1", 3000, false);
    assert.equal(told, 2);
    assert.equal(access.stillGranted({ kind: "public" }, "vm1", 3000), false);
    const keyGrant = { kind: "key", keyId: made.info.id } as const;
    assert.equal(access.stillGranted(keyGrant, "vm1", 3000), true);
    keys.revokeKey(made.info.id); // as `capsule keys revoke` does, from any process
    assert.equal(access.stillGranted(keyGrant, "vm1", 3000), false);
  } finally {
    db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("cookie tossing: a doubled Capsule cookie is nobody's; a VM's Set-Cookie is matched by its trimmed name; an API host under the preview domain refused", () => {
  assert.equal(readCookie("a=1; capsule_console=s1; b=2", "capsule_console"), "s1");
  assert.equal(readCookie("capsule_console=tossed; a=1; capsule_console=mine", "capsule_console"), undefined, "two of one name: neither is trusted");
  assert.equal(readCookie(" capsule_console =x", "capsule_console"), "x");
  assert.equal(readCookie("xcapsule_console=x", "capsule_console"), undefined);
  const own = ["capsule_preview", "capsule_console"];
  for (const v of ["capsule_preview=x", " capsule_preview =x; Path=/", "capsule_console\t=x", "capsule_preview=; Max-Age=0"]) assert.equal(setsOwnCookie(v, own), true, JSON.stringify(v));
  for (const v of ["app=1", "capsule_previewx=1", "x=capsule_preview=1", "capsule_preview"]) assert.equal(setsOwnCookie(v, own), false, JSON.stringify(v));
  assert.equal(setCookieName(" a b =1; Path=/"), "a b");
  assert.deepEqual(responseHeadersForClient(["Set-Cookie", "capsule_preview =evil; Path=/", "Set-Cookie", "app=1"], own), [["Set-Cookie", "app=1"]]);
  const names = { apiHostnames: ["127.0.0.1", "capsule.example.com"], domainSuffixes: [] };
  assert.throws(() => checkHostNames({ ...names, previewDomain: "capsule.example.com" }), /under the preview domain/);
  assert.throws(() => checkHostNames({ ...names, previewDomain: "example.com" }), /under the preview domain/);
  assert.doesNotThrow(() => checkHostNames({ ...names, previewDomain: "preview.example.net" }));
  assert.doesNotThrow(() => checkHostNames({ apiHostnames: ["localhost"], domainSuffixes: [], previewDomain: "localhost" }), "Chromium refuses Domain=localhost (preview-browser.test.ts)");
});

test("per-account bounds: live share links (dead rows pruned first) and claimed domains", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "capsule-bounds-"));
  const db = openDb(path.join(dir, "server.db"));
  try {
    const keys = new KeyStore(db);
    const acct = keys.ensureAccount("alice");
    const other = keys.ensureAccount("bob");
    const rows = new Rows(db);
    for (const [id, a] of [["vm1", acct.id], ["vm2", other.id]] as const) rows.insertVm({ id, account_id: a, name: null, idle_timeout_seconds: null, activity_threshold_bytes: 0, created_at: new Date().toISOString() });
    const now = 1_000_000;
    const fill = db.prepare("INSERT INTO preview_shares (id, account_id, vm_id, port, expires_at, created_at) VALUES (?, ?, 'vm1', 3000, ?, '')");
    db.transaction(() => {
      for (let i = 0; i < MAX_LIVE_SHARES_PER_ACCOUNT - 1; i++) fill.run(`live${i}`, acct.id, now + 60_000);
      fill.run("expired", acct.id, now - 1);
    })();
    rows.preview.createShare(acct.id, "vm1", 3000, now + 60_000, now);
    assert.throws(() => rows.preview.createShare(acct.id, "vm1", 3000, now + 60_000, now), (e: Error & { code?: string; extra?: { reason?: string } }) => e.code === "BAD_REQUEST" && e.extra?.reason === "ACCOUNT_SHARES");
    assert.equal(rows.preview.shareLive("expired", "vm1", 3000, now - 2), false, "the expired row was pruned (a missing row opens nothing)");
    assert.equal(rows.preview.revokeShare("vm1", "live0"), true);
    rows.preview.createShare(acct.id, "vm1", 3000, now + 60_000, now); // the revoked row made room
    rows.preview.createShare(other.id, "vm2", 3000, now + 60_000, now); // another account's cap is its own

    const claim = db.prepare("INSERT INTO domains (domain, account_id, vm_id, vm_port, created_at) VALUES (?, ?, 'vm1', 443, '')");
    db.transaction(() => {
      for (let i = 0; i < MAX_DOMAINS_PER_ACCOUNT; i++) claim.run(`d${i}.apps.example.org`, acct.id);
    })();
    const tooMany = (e: Error & { code?: string; extra?: { reason?: string } }) => e.code === "CREATE_VM_BAD_REQUEST" && e.extra?.reason === "ACCOUNT_DOMAINS";
    assert.throws(() => rows.domains.checkFree(acct, [{ domain: "new.apps.example.org", vmPort: 443 }]), tooMany);
    assert.doesNotThrow(() => rows.domains.checkFree(acct, [{ domain: "d0.apps.example.org", vmPort: 3000 }]), "moving a name it holds adds none");
    assert.doesNotThrow(() => rows.domains.checkFree(other, [{ domain: "new.apps.example.org", vmPort: 443 }]));
  } finally {
    db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** Console sessions and PTY tokens without a browser or sandboxes: expiry, single use, revocation. */
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { ConsoleAuth, readCookie, SESSION_TTL_MS, WS_TOKEN_TTL_MS } from "../src/console/auth.js";
import { openDb } from "../src/db.js";
import { KeyStore } from "../src/keys.js";

describe("console auth", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "capsule-console-auth-"));
  const db = openDb(path.join(dir, "capsule.db"));
  after(() => {
    db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const keys = new KeyStore(db);
  let now = 1_000_000;
  const auth = new ConsoleAuth(db, keys, () => now);

  it("signs in with a key, never with a wrong one; sessions expire and sign out", () => {
    const { key } = keys.createKey("alice");
    assert.equal(auth.signIn(`${key}x`), undefined);
    assert.equal(auth.signIn("cap_aaaaaaaaaaaa_" + "x".repeat(43)), undefined);
    const s = auth.signIn(key);
    assert.ok(s);
    assert.notEqual(s.sessionId, key);
    assert.equal(auth.authenticate(s.sessionId)?.name, "alice");
    assert.equal(auth.authenticate("nope"), undefined);
    now += SESSION_TTL_MS;
    assert.equal(auth.authenticate(s.sessionId), undefined, "expired");
    const s2 = auth.signIn(key);
    assert.ok(s2);
    auth.signOut(s2.sessionId);
    assert.equal(auth.authenticate(s2.sessionId), undefined, "signed out");
  });

  it("PTY tokens: one VM, single use, short-lived, dead with the session or the key", () => {
    const { key, info } = keys.createKey("alice");
    const s = auth.signIn(key);
    assert.ok(s);
    const t1 = auth.issueWsToken(s.sessionId, "vm1", "claude");
    assert.ok(t1);
    assert.equal(auth.consumeWsToken(t1.token, "vm2"), undefined, "another VM");
    assert.equal(auth.consumeWsToken(t1.token, "vm1"), undefined, "spent by the failed try");
    const t2 = auth.issueWsToken(s.sessionId, "vm1", "claude");
    const spent = auth.consumeWsToken(t2?.token, "vm1");
    assert.ok(spent);
    assert.deepEqual({ account: spent.account, user: spent.user, keyId: spent.keyId }, { account: auth.authenticate(s.sessionId), user: "claude", keyId: info.id });
    assert.equal(auth.sessionLive(spent.sessionRef), true);
    const ended: string[] = [];
    auth.onSessionEnd((ref) => ended.push(ref));
    assert.equal(auth.consumeWsToken(t2?.token, "vm1"), undefined, "single use");
    const t3 = auth.issueWsToken(s.sessionId, "vm1", undefined);
    now += WS_TOKEN_TTL_MS;
    assert.equal(auth.consumeWsToken(t3?.token, "vm1"), undefined, "expired");
    const t4 = auth.issueWsToken(s.sessionId, "vm1", undefined);
    assert.ok(keys.revokeKey(info.id));
    assert.equal(auth.consumeWsToken(t4?.token, "vm1"), undefined, "key revoked");
    assert.equal(auth.authenticate(s.sessionId), undefined, "the session ended with its key");
    assert.equal(auth.sessionLive(spent.sessionRef), false);
    assert.deepEqual(ended, [spent.sessionRef], "its sockets are told once");
    assert.equal(auth.issueWsToken(s.sessionId, "vm1", undefined), undefined);
  });

  it("reads one cookie", () => {
    assert.equal(readCookie("a=1; capsule_console=abc; b=2", "capsule_console"), "abc");
    assert.equal(readCookie("xcapsule_console=abc", "capsule_console"), undefined);
    assert.equal(readCookie(undefined, "capsule_console"), undefined);
  });
});

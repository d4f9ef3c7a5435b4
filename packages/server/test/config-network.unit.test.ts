import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { DEFAULT_NETWORK } from "@capsule/engine";
import { resolveConfig } from "../src/config.js";

describe("server config: runsc and its network stack", () => {
  let dataDir = "";
  before(async () => {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-config-net-"));
  });
  after(async () => {
    await fs.rm(dataDir, { recursive: true, force: true });
  });

  it("defaults to the engine's network and runsc on PATH", () => {
    const c = resolveConfig({ dataDir }, {});
    assert.equal(c.network, DEFAULT_NETWORK);
    assert.equal(c.runscPath, "runsc");
  });

  it("takes capsule.json, then env, then the option (the CLI's --network and --runsc)", async () => {
    await fs.writeFile(path.join(dataDir, "capsule.json"), JSON.stringify({ network: "hostinet", runscPath: "/opt/file/runsc" }));
    try {
      assert.equal(resolveConfig({ dataDir }, {}).network, "hostinet");
      assert.equal(resolveConfig({ dataDir }, {}).runscPath, "/opt/file/runsc");
      const env = { CAPSULE_NETWORK: "auto", CAPSULE_RUNSC: "/opt/env/runsc" };
      assert.equal(resolveConfig({ dataDir }, env).network, "auto");
      assert.equal(resolveConfig({ dataDir }, env).runscPath, "/opt/env/runsc");
      assert.equal(resolveConfig({ dataDir, network: "netstack", runscPath: "/opt/opt/runsc" }, env).network, "netstack");
      assert.equal(resolveConfig({ dataDir, network: "netstack", runscPath: "/opt/opt/runsc" }, env).runscPath, "/opt/opt/runsc");
    } finally {
      await fs.rm(path.join(dataDir, "capsule.json"));
    }
  });

  it("refuses an unknown stack before anything starts", () => {
    assert.throws(() => resolveConfig({ dataDir }, { CAPSULE_NETWORK: "sandbox" }), /network must be netstack, hostinet or auto, got sandbox/);
  });
});

/** The host conntrack table's sizing: the engine's figures and the ones scripts/setup.sh writes into the kernel. */
import assert from "node:assert/strict";
import fs from "node:fs";
import { describe, it } from "node:test";
import { CONNTRACK_HOST_RESERVE, conntrackShortfall, vmsConntrackHolds } from "../src/net/conntrack.js";
import { MAX_CONNTRACK_ENTRIES_PER_VM } from "../src/net/firewall.js";

// From dist/test/ up to the repository.
const SETUP = fs.readFileSync(new URL("../../../../scripts/setup.sh", import.meta.url), "utf8");

describe("conntrack table sizing", () => {
  it("scripts/setup.sh sizes the table with the engine's per-VM bound and host reserve", () => {
    const m = /ct_max=\$\(\( max_vms \* (\d+) \+ (\d+) \)\)/.exec(SETUP);
    assert.ok(m, "setup.sh's ct_max line not found");
    assert.equal(Number(m[1]), MAX_CONNTRACK_ENTRIES_PER_VM);
    assert.equal(Number(m[2]), CONNTRACK_HOST_RESERVE);
  });

  it("counts the VMs a table holds at their bound, past the host's reserve", () => {
    assert.equal(vmsConntrackHolds(262_144), 77); // the kernel's default here
    assert.equal(vmsConntrackHolds(256 * MAX_CONNTRACK_ENTRIES_PER_VM + CONNTRACK_HOST_RESERVE), 256); // setup.sh's default
    assert.equal(vmsConntrackHolds(CONNTRACK_HOST_RESERVE - 1), 0);
  });

  it("warns only when more VMs have a network than the table holds, and says how to size it", () => {
    assert.equal(conntrackShortfall(77, 262_144), undefined);
    const warning = conntrackShortfall(78, 262_144);
    assert.match(warning ?? "", /runs 78 VMs, .*nf_conntrack_max 262144\) holds 77 .*CAPSULE_MAX_VMS/);
  });
});

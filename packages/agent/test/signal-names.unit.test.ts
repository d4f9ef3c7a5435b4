/** Signal names as clients write them (freestyle 0.2 lower case, 0.1 upper case) map onto the one table. */
import assert from "node:assert/strict";
import { it } from "node:test";
import { SIGNAL_NAMES, parseSignalName } from "@capsule/agent-protocol";

it("parseSignalName takes any case, with or without SIG, and nothing outside the table", () => {
  for (const name of SIGNAL_NAMES) {
    const bare = name.slice(3);
    for (const spelling of [name, name.toLowerCase(), bare, bare.toLowerCase(), `Sig${bare.toLowerCase()}`]) assert.equal(parseSignalName(spelling), name, spelling);
  }
  for (const bad of ["SIGSEGV", "segv", "", "SIG", "sigkill ", "hasOwnProperty", "x".repeat(40), 9, null, undefined]) assert.equal(parseSignalName(bad), undefined, String(bad));
});

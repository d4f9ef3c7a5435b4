import type { Command } from "commander";
import type { Vm } from "@capsule/sdk";
import { client } from "../api.js";

/** The VM handle a `vm service` command acts through: as --user when given (it sees only that user's services). */
export function serviceVm(cmd: Command, id: string): Vm {
  const user = cmd.optsWithGlobals<{ user?: string }>().user;
  const vm = client(cmd).vms.ref({ vmId: id });
  return user ? vm.user({ username: user }) : vm;
}

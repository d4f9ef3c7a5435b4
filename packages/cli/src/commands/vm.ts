import type { Command } from "commander";
import { examples } from "../api.js";
import { registerVmCp } from "./vm-cp.js";
import { registerVmCreate } from "./vm-create.js";
import { registerVmDelete } from "./vm-delete.js";
import { registerVmExec } from "./vm-exec.js";
import { registerVmFork } from "./vm-fork.js";
import { registerVmGet } from "./vm-get.js";
import { registerVmList } from "./vm-list.js";
import { registerVmService } from "./vm-service.js";
import { registerVmShell } from "./vm-shell.js";
import { registerVmSnapshot } from "./snapshot-create.js";
import { registerVmStart } from "./vm-start.js";
import { registerVmStop } from "./vm-stop.js";
import { registerVmSuspend } from "./vm-suspend.js";
import { registerVmUrl } from "./vm-url.js";

/** `capsule vm ...`: VMs through the API (the public SDK). */
export function registerVm(program: Command): void {
  const vm = program
    .command("vm")
    .description("create, inspect, run commands in and manage VMs")
    .addHelpText("after", examples("capsule vm create --user claude", "capsule vm exec VM -- 'id && uname -a'", "capsule vm shell VM --user claude", "capsule vm cp ./app.tgz VM:/srv/app/", "capsule vm service create VM dev --cwd /srv/app -- npm run dev", "capsule vm url VM 5173 --share 2h", "capsule vm fork VM --count 3", "capsule vm list --json"));
  registerVmCreate(vm);
  registerVmList(vm);
  registerVmGet(vm);
  registerVmExec(vm);
  registerVmShell(vm);
  registerVmCp(vm);
  registerVmStart(vm);
  registerVmStop(vm);
  registerVmSuspend(vm);
  registerVmSnapshot(vm);
  registerVmFork(vm);
  registerVmService(vm);
  registerVmUrl(vm);
  registerVmDelete(vm);
}

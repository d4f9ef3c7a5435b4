/**
 * `POST /v5/vms/{vm_id}/pause` (`vm.pause()`): the VM's sandbox is paused with its memory kept
 * (the runtime's `pause`), and `POST .../start`, or the next call that needs the guest, resumes
 * it where it was. A paused VM keeps its host memory and counts as running for the account's
 * quotas; it stays paused across a server restart.
 * @module
 */
import { createRoute, z } from "@hono/zod-openapi";
import { VmData } from "@capsule/contract/v5";
import type { App, Deps } from "../../context.js";
import type { Account } from "../../keys.js";
import { VmParams } from "../../schemas.js";
import type { VmService } from "../../vm-service.js";
import { account, errors, json, security } from "../common.js";
import { vmData } from "./views.js";

/** The VM as v5 shows it, `paused` included (one engine record read). */
export async function vmDataOf(svc: VmService, acc: Account, id: string): Promise<VmData> {
  const { info, record } = await svc.views.getWithEngine(acc, id);
  return vmData(info, record.state === "paused");
}

export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v5/vms/{vm_id}/pause",
      summary: "Pause a VM, keeping its memory (v5)",
      description: [
        "Freezes the VM's processes where they are (gVisor's `runsc pause`); `POST .../start` resumes them exactly there, and so does any call that needs the guest (exec, files, PTY), as it wakes a suspended VM. Answers the VM, `state: paused`.",
        "A paused VM keeps its host memory: it counts against the account's running VMs and the host's capacity like a running one, is never idle-stopped, and stays paused across a server restart (a host reboot loses its memory: it is then `stopped`). A paused VM is left as it is; a stopped one answers 400 VM_NOT_RUNNING.",
      ].join("\n\n"),
      security,
      request: { params: VmParams, body: { content: { "application/json": { schema: z.object({}) } }, required: false } },
      responses: { 200: json(VmData), ...errors(400, 404) },
    }),
    async (c) => {
      const { vm_id } = c.req.valid("param");
      await svc.power.pause(account(c), vm_id);
      return c.json(await vmDataOf(svc, account(c), vm_id), 200);
    },
  );
}

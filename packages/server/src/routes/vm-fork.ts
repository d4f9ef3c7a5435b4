import { createRoute, z } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { ForkRequest, VmParams } from "../schemas.js";
import { account, errors, json, security } from "./common.js";

const ForkResponse = z.object({ vmId: z.string(), forks: z.array(z.object({ id: z.string(), domains: z.array(z.string()), consoleUrl: z.null() })) }).openapi("ForkResponse");

/**
 * New VMs from the source as it is now; the source keeps running. Forks inherit its idle timeout.
 * Where the source can be checkpointed each fork resumes its processes (a memory fork), else it
 * boots the current disk; Capsule's `memory` forces either.
 */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/vms/{vm_id}/fork",
      summary: "Fork a VM",
      description: "Each fork resumes the source's running processes where the source can be checkpointed (one checkpoint, restored into each fork with its own writable layer, address and hostname), and boots its current disk otherwise; `memory` (Capsule extension) forces either, `memory: true` answering 400 BAD_REQUEST `reason: MEMORY_UNSUPPORTED` for a VM that cannot be checkpointed. Forks run with the source's size. The account's VM caps answer 403 VM_LIMIT_EXCEEDED (`reason: ACCOUNT_VMS | ACCOUNT_RUNNING_VMS`), a host out of memory or CPU for VMs 503 SERVICE_UNAVAILABLE (`reason: HOST_MEMORY | HOST_CPU`); nothing is forked when refused.",
      security,
      request: { params: VmParams, body: { content: { "application/json": { schema: ForkRequest } }, required: false } },
      responses: { 200: json(ForkResponse), ...errors(400, 403, 404, 503) },
    }),
    async (c) => {
      const { vm_id } = c.req.valid("param");
      const acc = account(c);
      // Through the gateway: ownership first, then the hold (another account's 404 touches nothing).
      const body = c.req.valid("json");
      const ids = await svc.gateway.withVm(acc, vm_id, { wake: false }, (vm) => svc.provisioning.fork(acc, vm.row, body?.count ?? 1, body?.memory ?? "auto"));
      return c.json({ vmId: vm_id, forks: ids.map((id) => ({ id, domains: [] as string[], consoleUrl: null })) }, 200);
    },
  );
}

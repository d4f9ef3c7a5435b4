import { createRoute } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { CreateVmRequest, CreateVmResponse } from "../schemas.js";
import { account, errors, json, security } from "./common.js";

/** Creates a VM (empty body: the default image) and answers once it is ready for exec. */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/vms",
      summary: "Create a VM",
      description: "Boots a VM from the default image or a snapshot (`snapshotId` or `template.snapshotId`), creates `groups` then `users`, writes `additionalFiles`, installs `systemd.services` (and applies `systemd.patchedServices` to the snapshot's), starts the enabled ones, and answers when exec works and they are up (a oneshot: once it ran; at most the agent's 20 s settle wait). Unsupported features (git, domains, nics, spec, template.baseImage) answer CREATE_VM_BAD_REQUEST. Admission: a size over the per-VM maximum answers 403 MEM_OVER_PLAN_LIMIT / VCPU_OVER_PLAN_LIMIT / ROOTFS_OVER_PLAN_LIMIT; the account's VM caps 403 VM_LIMIT_EXCEEDED (`reason: ACCOUNT_VMS | ACCOUNT_RUNNING_VMS`); a host out of memory or CPU for VMs 503 SERVICE_UNAVAILABLE (`reason: HOST_MEMORY | HOST_CPU`, retryable). Nothing is created when refused.",
      security,
      request: { body: { content: { "application/json": { schema: CreateVmRequest } }, required: false } },
      responses: { 200: json(CreateVmResponse), ...errors(400, 403, 404, 503) },
    }),
    async (c) => c.json(await svc.provisioning.create(account(c), c.req.valid("json") ?? {}), 200),
  );
}

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
      description: "Boots a VM from the default image or a snapshot (`snapshotId` or `template.snapshotId`), creates `groups` then `users`, writes `additionalFiles`, installs `systemd.services` (and applies `systemd.patchedServices` to the snapshot's), starts the enabled ones, and answers when exec works and they are up (a oneshot: once it ran; at most the agent's 20 s settle wait). An inline `spec` or a `template` with layer fields (`aptDeps`, `additionalFiles`, `systemd`, `users`, `groups`, `workdir`, `baseImage`, `git`), or a root-level `git`/`gitRepos` (part of the template's layer), is ensured first as by `POST /v1/vms/snapshots` (built once per content hash) and the VM boots from its snapshot; a failed build answers VM_SETUP_FAILED, a layer field Capsule does not build 501 naming it. Unsupported features (nics, ...) answer CREATE_VM_BAD_REQUEST. Admission: a size over the per-VM maximum answers 403 MEM_OVER_PLAN_LIMIT / VCPU_OVER_PLAN_LIMIT / ROOTFS_OVER_PLAN_LIMIT; the account's VM caps 403 VM_LIMIT_EXCEEDED (`reason: ACCOUNT_VMS | ACCOUNT_RUNNING_VMS`); a host out of memory or CPU for VMs 503 SERVICE_UNAVAILABLE (`reason: HOST_MEMORY | HOST_CPU`, retryable). Nothing is created when refused.",
      security,
      request: { body: { content: { "application/json": { schema: CreateVmRequest } }, required: false } },
      responses: { 200: json(CreateVmResponse), ...errors(400, 403, 404, 503) },
    }),
    async (c) => {
      // An inline template or spec is ensured first (built, or its snapshot from the cache).
      const { body } = await svc.builds.forCreate(account(c), c.req.valid("json") ?? {});
      return c.json(await svc.provisioning.create(account(c), body), 200);
    },
  );
}

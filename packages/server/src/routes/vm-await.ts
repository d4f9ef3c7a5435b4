import { createRoute, z } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { VmParams } from "../schemas.js";
import { account, errors, json, security } from "./common.js";

const POLL_MS = 500;

/** Blocks until the VM is no longer running (stopped, suspended or deleted), then says which. */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/vms/{vm_id}/await",
      summary: "Wait for a VM to stop",
      security,
      request: { params: VmParams },
      responses: { 200: json(z.object({ id: z.string(), exitStatus: z.string() })), ...errors(404) },
    }),
    async (c) => {
      const { vm_id } = c.req.valid("param");
      const acc = account(c);
      const aborted = c.req.raw.signal;
      await svc.views.get(acc, vm_id); // ownership first: someone else's id is a 404, not "deleted"
      for (;;) {
        const vm = await svc.views.get(acc, vm_id).catch(() => undefined);
        if (!vm) return c.json({ id: vm_id, exitStatus: "deleted" }, 200);
        if (vm.state === "stopped" || vm.state === "suspended") return c.json({ id: vm_id, exitStatus: vm.state }, 200);
        if (aborted.aborted) return c.json({ id: vm_id, exitStatus: "running" }, 200);
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
    },
  );
}

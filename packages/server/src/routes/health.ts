import { createRoute, z } from "@hono/zod-openapi";
import type { App, Deps } from "../context.js";
import { json } from "./common.js";

const Features = z
  .object({
    network: z.enum(["netstack", "hostinet"]).openapi({ description: "The gVisor VMs' network stack: gVisor's own (netstack) or the host kernel's (hostinet)." }),
    checkpoint: z.boolean().openapi({ description: "Whether running VMs can be checkpointed with their memory (only on netstack)." }),
  })
  .openapi({ description: "Memory features this server's sandboxes have, as its start-up found them." });

/**
 * Liveness: the process answers. Public, so load balancers need no key; it also says which memory
 * features the host has (nothing a tenant could not learn by trying), for the console and SDKs.
 */
export function register(app: App, deps: Deps): void {
  const { features } = deps;
  app.openapi(
    createRoute({ method: "get", path: "/healthz", summary: "Health check and the host's memory features", responses: { 200: json(z.object({ ok: z.boolean(), features: Features.optional() })) } }),
    (c) => c.json({ ok: true, ...(features ? { features: { network: features.network, checkpoint: features.checkpoint } } : {}) }, 200),
  );
}

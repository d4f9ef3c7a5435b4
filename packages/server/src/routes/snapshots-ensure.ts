import { createRoute } from "@hono/zod-openapi";
import { EnsureSnapshotRequest, EnsureSnapshotResponse } from "@capsule/contract/schemas";
import type { App, Deps } from "../context.js";
import { account, errors, json, security } from "./common.js";

/** `snapshots.ensure` / `create`: the snapshot of a template or spec, built once per content hash. */
export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/vms/snapshots",
      summary: "Ensure a snapshot of a template or spec",
      description:
        "Builds the layers (a `template`, or a `spec` whose `snapshot` nests the layer under it) in a builder VM each — a `baseImage.dockerfileContent` first (FROM a Debian suite the host has an image of, RUN, ENV, WORKDIR, USER; anything else 501 naming the instruction and its line), groups and users, `additionalFiles`, `aptDeps` (apt-get through the host's package cache), `systemd` services installed and started (runCommands and waitFor are oneshots), `workdir` created — snapshots it and deletes the builder. The same layer on the same base (and `discriminator`) answers the earlier snapshot without a build (`cached: true`) unless `skipCache`; concurrent ensures of one layer share one build. Answers when the snapshot exists (synchronously, also when the client asks for a background request). A failed build answers VM_SETUP_FAILED with `buildId`, the failed phase in `reason` and `diagnostics` (the services' states, the failed ones' logs); `git.repos` clones repositories under the operator's allowed URL prefixes (resolved to a commit on the host, which is part of the layer's hash; a 501 when the operator allows none, 403 for another URL, 503 when the host cannot fetch it); fields Capsule does not build (ports, ...) answer 501 naming them.",
      security,
      request: { body: { content: { "application/json": { schema: EnsureSnapshotRequest } }, required: true } },
      responses: { 200: json(EnsureSnapshotResponse), ...errors(400, 403, 404, 500, 501, 503) },
    }),
    async (c) => c.json(await svc.builds.ensure(account(c), c.req.valid("json")), 200),
  );
}

/**
 * `/v5/vms`: create, list, get, delete and start, over the same provisioning, power and views as
 * `/v1` (same accounts, ownership checks, quotas and warm pool).
 * @module
 */
import { createRoute, z } from "@hono/zod-openapi";
import { CreateVmRequest, CreateVmResponse, ListVmsQuery, VmData, VmList, type VmState } from "@capsule/contract/v5";
import type { App, Deps } from "../../context.js";
import { VmParams } from "../../schemas.js";
import { account, errors, json, security } from "../common.js";
import { checkVmTargets, firewallPolicy, firewallRules } from "./firewall.js";
import { vmDataOf } from "./vm-pause.js";
import { isNever, unsupportedField } from "./unsupported.js";
import { page, vmData } from "./views.js";

/** Create fields for features Capsule does not have, with the value that asks for nothing. */
function unsupportedCreateField(body: CreateVmRequest): string | undefined {
  if (body.slug) return "slugs";
  if (body.reassignSlug) return "reassignSlug";
  if (!isNever(body.autoDeleteSeconds)) return "autoDeleteSeconds";
  if (!isNever(body.ttlSeconds)) return "ttlSeconds";
  if (!isNever(body.maxRunSeconds)) return "maxRunSeconds";
  if (!isNever(body.maxRunTotalSeconds)) return "maxRunTotalSeconds";
  if (body.automaticRestart === true) return "automaticRestart";
  if (body.vpcs?.length || body.networks?.length) return "VPCs";
  if (body.metadata && Object.keys(body.metadata).length > 0) return "metadata";
  if (body.placement !== undefined && body.placement !== null) return "placement";
  if (body.tls?.rules.length) return "TLS rules";
  return undefined;
}

export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v5/vms",
      summary: "Create a VM (v5)",
      description: [
        "Boots a VM from the base image or a Capsule snapshot and answers when exec works. `firewall` is required: the VM reaches nothing but what its allow rules name (`{rules: []}`: nothing). Outbound rules by destination: `{public: true}` (public IPv4), `{cidr}` (an IPv4 range; never loopback, link-local, multicast or the VM network), `{vmId: \"host\", protocol: \"tcp\", port}` (a host port the server lists, at `host.capsule.internal`), `{vmId}` (another of the account's VMs), each narrowed by `protocol`/`port`. Public and CIDR rules are refused (CREATE_VM_BAD_REQUEST) on a server run with `--egress none`. Inbound rules, VPCs, tunnels and IPv6 answer 501 (`reason: FIREWALL_RULES`).",
        "`idleTimeoutSeconds` -1, null or absent: never idle-stopped. `displayName` is kept as the VM's name.",
        "From a snapshot holding memory (`contents: memory+disk`) the VM resumes the source's processes (never a warm pool VM); `memory: false` boots its disk only.",
        "Not supported yet, answered 501 `BAD_REQUEST` (`unsupported: true`) when asked for: slugs, auto-delete, TTL, run limits, automaticRestart, VPCs, metadata, placement, TLS rules.",
        "Admission as for `POST /v1/vms` (403 *_OVER_PLAN_LIMIT / VM_LIMIT_EXCEEDED, 503 SERVICE_UNAVAILABLE).",
      ].join("\n\n"),
      security,
      request: { body: { content: { "application/json": { schema: CreateVmRequest } }, required: true } },
      responses: { 200: json(CreateVmResponse), ...errors(400, 403, 404, 501, 503) },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const firewall = firewallPolicy(body.firewall);
      const feature = unsupportedCreateField(body);
      if (feature) throw unsupportedField(feature);
      const idle = body.idleTimeoutSeconds === undefined || body.idleTimeoutSeconds === -1 ? null : body.idleTimeoutSeconds;
      const acc = account(c);
      await checkVmTargets(firewall, (vmId) => svc.views.get(acc, vmId).then(() => true, () => false));
      const { id } = await svc.provisioning.create(
        acc,
        { ...(body.snapshotId ? { snapshotId: body.snapshotId } : {}), ...(body.displayName ? { name: body.displayName } : {}), ...(body.memory !== undefined ? { memory: body.memory } : {}), idleTimeoutSeconds: idle },
        { firewall },
      );
      const { info, record } = await svc.views.getWithEngine(acc, id);
      return c.json({ ...vmData(info), firewallRules: firewallRules(id, record), tlsRules: [] }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v5/vms",
      summary: "List the account's VMs (v5)",
      description: "Filters: `state`, `snapshotId`, `limit`, `offset`. Capsule VMs have no slugs or metadata, so a `slug` or non-empty `metadata` filter matches none. The counts are over the filtered list, before paging.",
      security,
      request: { query: ListVmsQuery },
      responses: { 200: json(VmList), ...errors(400) },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const all = (await svc.views.listWithEngine(account(c))).map(({ info, record }) => vmData(info, record.state === "paused"));
      const vms = all.filter((v) => (q.state === undefined || v.state === q.state) && (q.snapshotId === undefined || v.snapshotId === q.snapshotId) && q.slug === undefined && !q.metadata);
      const count = (s: VmState) => vms.filter((v) => v.state === s).length;
      return c.json(
        {
          vms: page(vms, q),
          totalCount: vms.length,
          runningCount: count("running"),
          startingCount: count("starting"),
          pausingCount: count("pausing"),
          pausedCount: count("paused"),
          stoppedCount: count("stopped"),
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({ method: "get", path: "/v5/vms/{vm_id}", summary: "Get a VM (v5)", security, request: { params: VmParams }, responses: { 200: json(VmData), ...errors(404) } }),
    async (c) => c.json(await vmDataOf(svc, account(c), c.req.valid("param").vm_id), 200),
  );

  app.openapi(
    createRoute({
      method: "delete",
      path: "/v5/vms/{vm_id}",
      summary: "Delete a VM (v5)",
      description: "Answers 204 at once; the engine finishes the teardown in the background.",
      security,
      request: { params: VmParams },
      responses: { 204: { description: "Deleted" }, ...errors(404) },
    }),
    async (c) => {
      await svc.provisioning.delete(account(c), c.req.valid("param").vm_id);
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v5/vms/{vm_id}/start",
      summary: "Start a VM (v5)",
      description: "Resumes a paused VM where it was (memory kept); boots a stopped VM on the disk it had (its processes start afresh); a running VM is left as it is.",
      security,
      request: { params: VmParams, body: { content: { "application/json": { schema: z.object({}) } }, required: false } },
      responses: { 200: json(VmData), ...errors(404) },
    }),
    async (c) => {
      const { vm_id } = c.req.valid("param");
      await svc.power.start(account(c), vm_id);
      return c.json(await vmDataOf(svc, account(c), vm_id), 200);
    },
  );
}

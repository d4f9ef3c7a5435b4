/**
 * Capsule's preview routes for one VM port: its URL, share links (minted, revoked) and the
 * port's public switch. The owner's key only; another account's VM is VM_NOT_FOUND.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { CreateShareRequest, PortAccess, PortList, PreviewPortParams, SetPortPublicRequest, Share, ShareList, ShareParams, VmPortsParams } from "@capsule/contract/schemas";
import type { ShareRow } from "../vms/preview-rows.js";
import type { App, Deps } from "../context.js";
import { ApiError } from "../errors.js";
import { account, errors, json, security } from "./common.js";

const PORT_PATH = "/v1/vms/{vm_id}/ports/{port}";

const liveShare = (r: ShareRow) => ({ id: r.id, port: r.port, expiresAt: new Date(r.expiresAt).toISOString() });

export function register(app: App, { svc, preview }: Deps): void {
  if (!preview) return;
  app.openapi(
    createRoute({
      method: "get",
      path: PORT_PATH,
      summary: "A port's preview URL",
      description: "The VM port's preview URL (`<port>-<vmid>.<previewDomain>` on this server's port) and whether it is public.",
      security,
      request: { params: PreviewPortParams },
      responses: { 200: json(PortAccess), ...errors(400, 404) },
    }),
    async (c) => {
      const { vm_id, port } = c.req.valid("param");
      const row = svc.rows.ownedVm(account(c), vm_id);
      return c.json({ vmId: row.id, port, public: preview.rows.isPublic(row.id, port), url: preview.router.previewUrl(new URL(c.req.url), row.id, port) }, 200);
    },
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/vms/{vm_id}/ports",
      summary: "A VM's opened ports",
      description: "The VM's ports that are public or have live share links, each with its preview URL and live shares.",
      security,
      request: { params: VmPortsParams },
      responses: { 200: json(PortList), ...errors(400, 404) },
    }),
    async (c) => {
      const row = svc.rows.ownedVm(account(c), c.req.valid("param").vm_id);
      const shares = preview.rows.liveShares(row.id, Date.now());
      const publicPorts = new Set(preview.rows.publicPorts(row.id));
      const ports = [...new Set([...publicPorts, ...shares.map((s) => s.port)])].sort((a, b) => a - b);
      const origin = new URL(c.req.url);
      return c.json(
        {
          ports: ports.map((port) => ({
            vmId: row.id,
            port,
            public: publicPorts.has(port),
            url: preview.router.previewUrl(origin, row.id, port),
            shares: shares.filter((s) => s.port === port).map(liveShare),
          })),
        },
        200,
      );
    },
  );
  app.openapi(
    createRoute({
      method: "get",
      path: `${PORT_PATH}/shares`,
      summary: "A port's live share links",
      description: "The port's unexpired, unrevoked shares (their ids, to revoke them; the tokens are not kept).",
      security,
      request: { params: PreviewPortParams },
      responses: { 200: json(ShareList), ...errors(400, 404) },
    }),
    async (c) => {
      const { vm_id, port } = c.req.valid("param");
      const row = svc.rows.ownedVm(account(c), vm_id);
      return c.json({ shares: preview.rows.liveShares(row.id, Date.now(), port).map(liveShare) }, 200);
    },
  );
  app.openapi(
    createRoute({
      method: "post",
      path: `${PORT_PATH}/shares`,
      summary: "Share a preview port",
      description: "A signed link to the VM port's preview URL that works for `ttlSeconds` or until revoked, for anyone holding it. Opening it in a browser sets that preview host's own cookie (HttpOnly, host-only) and drops the token from the address.",
      security,
      request: { params: PreviewPortParams, body: { content: { "application/json": { schema: CreateShareRequest } }, required: true } },
      responses: { 200: json(Share), ...errors(400, 404) },
    }),
    async (c) => {
      const { vm_id, port } = c.req.valid("param");
      const row = svc.rows.ownedVm(account(c), vm_id);
      return c.json(preview.share(row.account_id, row.id, port, c.req.valid("json").ttlSeconds, new URL(c.req.url)), 200);
    },
  );
  app.openapi(
    createRoute({
      method: "delete",
      path: `${PORT_PATH}/shares/{share_id}`,
      summary: "Revoke a share link",
      description: "The link, and every browser cookie minted from it, stop working at once; connections opened with it (WebSockets, streams) are closed.",
      security,
      request: { params: ShareParams },
      responses: { 200: json(z.object({ id: z.string(), revoked: z.literal(true) })), ...errors(400, 404) },
    }),
    async (c) => {
      const { vm_id, share_id } = c.req.valid("param");
      const row = svc.rows.ownedVm(account(c), vm_id);
      if (!preview.revokeShare(row.id, share_id)) throw new ApiError("NOT_FOUND", `no live share ${share_id} on VM ${vm_id}`);
      return c.json({ id: share_id, revoked: true as const }, 200);
    },
  );
  app.openapi(
    createRoute({
      method: "put",
      path: `${PORT_PATH}/public`,
      summary: "Make a preview port public or private",
      description: "A public port's preview URL opens for anyone, without credentials. Ports are private by default; making one private again closes the connections anyone opened without credentials.",
      security,
      request: { params: PreviewPortParams, body: { content: { "application/json": { schema: SetPortPublicRequest } }, required: true } },
      responses: { 200: json(PortAccess), ...errors(400, 404) },
    }),
    async (c) => {
      const { vm_id, port } = c.req.valid("param");
      const row = svc.rows.ownedVm(account(c), vm_id);
      const on = c.req.valid("json").public;
      preview.setPublic(row.id, port, on);
      return c.json({ vmId: row.id, port, public: on, url: preview.router.previewUrl(new URL(c.req.url), row.id, port) }, 200);
    },
  );
}

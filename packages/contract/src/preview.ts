/**
 * Capsule's own preview routes (not Freestyle's): share links for a VM port and ports made
 * public. Preview URLs are `<port>-<vmid>.<previewDomain>` on the server's port.
 * @module
 */
import { z } from "zod";

/** The longest a share link may live (30 days). */
export const MAX_SHARE_TTL_SECONDS = 30 * 24 * 3600;

export const PreviewPortParams = z.object({
  vm_id: z.string().min(1),
  port: z.coerce.number().int().min(1).max(65535).meta({ description: "A TCP port inside the VM (its servers may listen on localhost only)." }),
});

export const ShareParams = PreviewPortParams.extend({ share_id: z.string().regex(/^[a-z0-9]{16}$/) });

export const CreateShareRequest = z
  .object({ ttlSeconds: z.number().int().min(1).max(MAX_SHARE_TTL_SECONDS).meta({ description: "How long the link works, seconds (at most 30 days)." }) })
  .meta({ id: "CreateShareRequest" });

export const Share = z
  .object({
    id: z.string().meta({ description: "Revoke the link with DELETE .../shares/{id}." }),
    vmId: z.string(),
    port: z.number().int(),
    url: z.string().meta({ description: "The preview URL with the share token; opening it sets the preview host's cookie and drops the token from the address." }),
    expiresAt: z.string().meta({ description: "ISO 8601." }),
  })
  .meta({ id: "PreviewShare" });
export type Share = z.infer<typeof Share>;

export const SetPortPublicRequest = z.object({ public: z.boolean() }).meta({ id: "SetPortPublicRequest" });

export const PortAccess = z
  .object({ vmId: z.string(), port: z.number().int(), public: z.boolean(), url: z.string().meta({ description: "The preview URL (without credentials)." }) })
  .meta({ id: "PreviewPortAccess" });
export type PortAccess = z.infer<typeof PortAccess>;

export const VmPortsParams = z.object({ vm_id: z.string().min(1) });

export const LiveShare = z
  .object({ id: z.string(), port: z.number().int(), expiresAt: z.string().meta({ description: "ISO 8601." }) })
  .meta({ id: "PreviewLiveShare", description: "An unexpired, unrevoked share of a VM port (its token is not kept: revoke it by id)." });
export type LiveShare = z.infer<typeof LiveShare>;

export const ShareList = z.object({ shares: z.array(LiveShare) }).meta({ id: "PreviewShareList" });
export type ShareList = z.infer<typeof ShareList>;

export const PortSummary = PortAccess.extend({ shares: z.array(LiveShare) }).meta({ id: "PreviewPortSummary" });
export type PortSummary = z.infer<typeof PortSummary>;

export const PortList = z
  .object({ ports: z.array(PortSummary).meta({ description: "The VM's ports that are public or have live shares, by port." }) })
  .meta({ id: "PreviewPortList" });
export type PortList = z.infer<typeof PortList>;

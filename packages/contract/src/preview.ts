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

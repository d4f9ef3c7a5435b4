/**
 * Changing a `/v5` VM after its create: `PATCH /v5/vms/{id}` (`vm.update`) and
 * `POST /v5/vms/{id}/resize` (`vm.resize`).
 * @module
 */
import { z } from "zod";
import { IdleTimeoutSeconds, UnsupportedVmFields } from "./common.js";

/** `PATCH /v5/vms/{id}`. Unknown keys are dropped (0.2 sends the caller's object as given). */
export const PatchVmRequest = z
  .object({
    displayName: z.string().max(256).nullish().meta({ description: "The VM's name; an empty string or null clears it." }),
    idleTimeoutSeconds: IdleTimeoutSeconds.meta({ description: "-1 or null: never idle-stopped; absent: unchanged." }),
    // Their "clear" values (an empty slug, -1, empty metadata) are no-ops, since Capsule has none.
    ...UnsupportedVmFields,
  })
  .meta({ id: "V5PatchVmRequest" });
export type PatchVmRequest = z.infer<typeof PatchVmRequest>;

/** `POST /v5/vms/{id}/resize`: vCPUs, memory in MiB, disk in MiB; every axis only grows. */
export const ResizeVmRequest = z
  .object({
    cpu: z.number().int().positive().optional().meta({ description: "vCPU count" }),
    memory: z.number().int().positive().optional().meta({ description: "Memory, MiB" }),
    storage: z.number().int().positive().optional().meta({ description: "Disk, MiB" }),
  })
  .meta({ id: "V5ResizeVmRequest" });
export type ResizeVmRequest = z.infer<typeof ResizeVmRequest>;

/**
 * Schemas of declarative snapshot builds: `POST /v1/vms/snapshots` (the official client's
 * `snapshots.ensure` / `create`) and the builds routes (`GET /v1/vms/builds/{id}`, `.../phases`,
 * `GET /v1/vms/{id}/build`), with the official client's field names. The layer fields themselves
 * (`aptDeps`, `additionalFiles`, `systemd`, ...) are checked by the server, which answers a 501
 * naming any field it does not implement instead of ignoring it.
 * @module
 */
import { z } from "zod";

/** A build's state, as `Build.wait()` reads it. */
export const BUILD_STATES = ["pending", "running", "succeeded", "failed"] as const;
export const BuildState = z.enum(BUILD_STATES).meta({ id: "BuildState" });
export type BuildState = z.infer<typeof BuildState>;

/** `POST /v1/vms/snapshots`: a `template` (one layer) or a `spec` (layers chained by `snapshot`). */
export const EnsureSnapshotRequest = z
  .object({
    /** The snapshot's name (of the outermost layer's). */
    name: z.string().max(256).nullish(),
    template: z.record(z.string(), z.unknown()).nullish(),
    spec: z.record(z.string(), z.unknown()).nullish(),
  })
  .meta({ id: "EnsureSnapshotRequest" });
export type EnsureSnapshotRequest = z.infer<typeof EnsureSnapshotRequest>;

export const EnsureSnapshotResponse = z
  .object({
    snapshotId: z.string(),
    /** The build that made the snapshot (an earlier one when it came from the cache). */
    buildId: z.string(),
    /** The layer's content hash: the same layer on the same base is the same snapshot. */
    templateHash: z.string(),
    /** True when no build ran: an earlier build's snapshot was reused. */
    cached: z.boolean(),
  })
  .meta({ id: "EnsureSnapshotResponse" });
export type EnsureSnapshotResponse = z.infer<typeof EnsureSnapshotResponse>;

/** `GET /v1/vms/builds/{build_id}`. */
export const BuildInfo = z
  .object({
    buildId: z.string(),
    accountId: z.string(),
    state: BuildState,
    templateHash: z.string(),
    /** The snapshot it made, once it succeeded. */
    snapshotId: z.string().nullable(),
    /** The snapshot it built on; null: the base image. */
    baseSnapshotId: z.string().nullable(),
    failureReason: z.string().nullable(),
    plannedPhases: z.array(z.string()),
    startedAt: z.string(),
    finishedAt: z.string().nullable(),
    updatedAt: z.string(),
  })
  .meta({ id: "BuildInfo" });
export type BuildInfo = z.infer<typeof BuildInfo>;

/** One phase of a build, with what it printed (its tail). */
export const BuildPhase = z
  .object({
    phaseId: z.string(),
    buildId: z.string(),
    name: z.string(),
    state: z.enum(["running", "succeeded", "failed"]),
    /** The snapshot phase's snapshot. */
    snapshotId: z.string().nullable(),
    log: z.string(),
    startedAt: z.string(),
    finishedAt: z.string().nullable(),
  })
  .meta({ id: "BuildPhase" });
export type BuildPhase = z.infer<typeof BuildPhase>;

export const BuildPhases = z.object({ phases: z.array(BuildPhase) }).meta({ id: "BuildPhases" });
export type BuildPhases = z.infer<typeof BuildPhases>;

export const VmBuildRef = z.object({ buildId: z.string() }).meta({ id: "VmBuildRef" });
export type VmBuildRef = z.infer<typeof VmBuildRef>;

/** The most builds one page of `GET /v1/vms/builds` holds. */
export const MAX_BUILDS_PAGE = 200;

/** `GET /v1/vms/builds`: the account's builds, newest first, a page at a time. */
export const BuildListQuery = z.object({
  state: BuildState.optional(),
  limit: z.coerce.number().int().min(1).max(MAX_BUILDS_PAGE).optional(),
  offset: z.coerce.number().int().min(0).optional(),
});
export type BuildListQuery = z.infer<typeof BuildListQuery>;

export const BuildList = z
  .object({
    builds: z.array(BuildInfo),
    /** Builds matching the query, all pages. */
    totalCount: z.number(),
    limit: z.number(),
    offset: z.number(),
  })
  .meta({ id: "BuildList" });
export type BuildList = z.infer<typeof BuildList>;

/**
 * The chunked, resumable upload of `/v5` (`fs.writeFile` of more than 8 MiB in `freestyle@0.2.x`):
 * `POST .../fs/uploads` opens a session, `PUT .../fs/uploads/{uploadId}?offset=` stores one chunk,
 * `GET` tells where to resume, `POST .../commit` verifies and replaces the file, `DELETE` aborts.
 * @module
 */
import { z } from "zod";
import { MAX_MODE, Sha256Hex } from "./common.js";

/** The largest file one upload session may declare (0.2 documents a 16 GiB per-file ceiling). */
export const MAX_UPLOAD_BYTES = 16 * 1024 ** 3;
/** The largest chunk one PUT may carry (0.2: "the server caps a chunk at 256 MiB"). */
export const MAX_UPLOAD_CHUNK_BYTES = 256 * 1024 ** 2;


export const CreateUploadRequest = z
  .object({
    path: z.string().min(1).meta({ description: "Absolute path of the file in the VM (no `..`, at most 4096 bytes)" }),
    size: z.number().int().min(0).max(MAX_UPLOAD_BYTES).meta({ description: `The file's size in bytes (at most ${MAX_UPLOAD_BYTES})` }),
    sha256: Sha256Hex.optional()
      .meta({ description: "SHA-256 of the whole file; the commit refuses a file whose bytes differ (400 FILES_BAD_REQUEST, reason SHA256_MISMATCH) and keeps the old one." }),
    mode: z.number().int().min(0).max(MAX_MODE).optional().meta({ description: "Permission bits (a JSON number: 493 = 0o755). Default: the file's current mode, or 0o600 for a new file." }),
  })
  .meta({ id: "V5CreateUploadRequest" });
export type CreateUploadRequest = z.infer<typeof CreateUploadRequest>;

export const UploadStatus = z
  .object({
    uploadId: z.string(),
    path: z.string(),
    size: z.number(),
    receivedBytes: z.number().meta({ description: "Bytes stored so far: the offset the next chunk must start at" }),
  })
  .meta({ id: "V5UploadStatus" });
export type UploadStatus = z.infer<typeof UploadStatus>;

export const UploadChunkQuery = z.object({
  offset: z
    .string()
    .regex(/^\d{1,16}$/, "must be a non-negative integer")
    .meta({ description: "Where this chunk starts in the file: must equal the session's `receivedBytes`" }),
});

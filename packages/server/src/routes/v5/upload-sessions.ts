/**
 * The sessions of the v5 chunked upload, and where their bytes live.
 *
 * A session is server memory only (a few hundred bytes: who, where, the declared size and
 * digest, the length of each stored chunk and a SHA-256 state); its bytes are in the VM, one
 * file per chunk under `UPLOAD_ROOT/<uploadId>/`, each written atomically by the agent, so a
 * chunk whose request died half-way (client gone, connection cut) leaves nothing and the
 * session resumes at the end of the last whole chunk. The commit streams the chunks back, in
 * order, into the target file (the agent's own temp file + rename), hashing them as they pass:
 * the file is replaced only when what the VM held is what arrived, and what arrived matches the
 * declared `sha256`. Nothing ever holds a whole file, or a whole chunk, in server memory.
 *
 * Bounds: sessions and declared bytes per account (`ServerLimits`), the file size and chunk size
 * of the contract, a chunk count per session, and an idle expiry. A session ends on commit,
 * abort (DELETE), a failed verification, expiry or the server's shutdown (`close`, which cuts a
 * chunk in flight and removes every session's chunks from the VMs that run), and its chunk
 * directory goes with it. The store lives in this process: after a restart every session is gone
 * (the client's next chunk gets a 404 and it starts over), and the first upload into a VM
 * afterwards removes what an old process could not (one that crashed, or whose cleanup found
 * the VM stopped or suspended: it is not woken for this) under `UPLOAD_ROOT`.
 * @module
 */
import { createHash, randomBytes, type Hash } from "node:crypto";
import { pipeline, Readable, Transform } from "node:stream";
import { MAX_UPLOAD_CHUNK_BYTES, type CreateUploadRequest, type UploadStatus } from "@capsule/contract/v5";
import type { Logger } from "pino";
import type { ServerLimits } from "../../context.js";
import { ApiError } from "../../errors.js";
import type { GuestGateway, VmGuest } from "../../guest/gateway.js";
import type { Account } from "../../keys.js";
import { Sha256Check } from "./fs-write.js";

/** Where a VM's upload chunks live (root only: the agent's writes make them 0600). */
export const UPLOAD_ROOT = "/var/tmp/.capsule-uploads";
/** Chunks per session: each is a file in the VM and an entry here; 16 MiB chunks reach 256 GiB. */
export const MAX_UPLOAD_CHUNKS = 16_384;
/** 0.2's default mode for a file that does not exist yet. */
const NEW_FILE_MODE = 0o600;
/** How long a shutdown waits for chunks in flight to end and chunk dirs to go; the rest is the next upload's sweep. */
const UPLOAD_CLOSE_BUDGET_MS = 5_000;

export type UploadLimits = Pick<ServerLimits, "maxUploadSessionsPerAccount" | "maxUploadHeldBytesPerAccount" | "uploadIdleMs">;

export interface UploadSession {
  readonly id: string;
  readonly account: Account;
  readonly vmId: string;
  readonly path: string;
  readonly size: number;
  readonly mode: number | undefined;
  readonly sha256: string | undefined;
  /** Lengths of the stored chunks, in file order. */
  readonly chunks: number[];
  received: number;
  /** SHA-256 state over the stored chunks' bytes. */
  hash: Hash;
  lastUsed: number;
  /** A chunk PUT or the commit is running; another one is refused (409). */
  busy: boolean;
  /** Committed, aborted or expired: the next request answers 404. */
  ended: boolean;
}

function filesError(message: string, reason: string, status?: number): ApiError {
  return new ApiError("FILES_BAD_REQUEST", message, status, { reason });
}

/** Counts and hashes a chunk's bytes on their way to the VM; fails once they pass `max`. */
class ChunkMeter extends Transform {
  bytes = 0;
  error: ApiError | undefined;

  constructor(
    private readonly max: number,
    readonly hash: Hash,
    private readonly pastMax: () => ApiError,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null, data?: Buffer) => void): void {
    this.bytes += chunk.length;
    if (this.bytes > this.max) return done((this.error = this.pastMax()));
    this.hash.update(chunk);
    done(null, chunk);
  }

  override _flush(done: (err?: Error | null) => void): void {
    done(this.bytes === 0 ? (this.error = filesError("a chunk must carry at least one byte", "EMPTY_CHUNK")) : null);
  }
}

export class UploadSessions {
  readonly #sessions = new Map<string, UploadSession>();
  /** VMs whose UPLOAD_ROOT this process has cleared of other processes' (or failed cleanups') leftovers. */
  readonly #swept = new Set<string>();
  #expiry: NodeJS.Timeout | undefined;
  /** Chunks, commits and cleanups under way: a shutdown waits for them. */
  readonly #running = new Set<Promise<unknown>>();

  constructor(
    private readonly gateway: GuestGateway,
    private readonly limits: UploadLimits,
    private readonly log: Logger,
  ) {}

  /** Opens a session (nothing is written to the VM until the first chunk). */
  async create(account: Account, guest: VmGuest, vmId: string, req: CreateUploadRequest, path: string): Promise<UploadSession> {
    const mine = [...this.#sessions.values()].filter((s) => s.account.id === account.id);
    if (mine.length >= this.limits.maxUploadSessionsPerAccount) {
      throw new ApiError("SESSION_CAP_REACHED", `the account has ${mine.length} uploads open, the most it may; commit or abort (DELETE) one first`, undefined, { reason: "UPLOAD_SESSIONS" });
    }
    const held = mine.reduce((n, s) => n + s.size, 0);
    if (held + req.size > this.limits.maxUploadHeldBytesPerAccount) {
      throw new ApiError("SESSION_CAP_REACHED", `the account's open uploads declare ${held} bytes; ${req.size} more would pass its limit of ${this.limits.maxUploadHeldBytesPerAccount}`, undefined, { reason: "UPLOAD_BYTES" });
    }
    await this.#sweep(vmId, guest);
    const s: UploadSession = {
      id: `up-${randomBytes(16).toString("hex")}`,
      account,
      vmId,
      path,
      size: req.size,
      mode: req.mode,
      sha256: req.sha256?.toLowerCase(),
      chunks: [],
      received: 0,
      hash: createHash("sha256"),
      lastUsed: Date.now(),
      busy: false,
      ended: false,
    };
    this.#sessions.set(s.id, s);
    this.#expiry ??= setInterval(() => this.#expire(), Math.min(this.limits.uploadIdleMs / 2, 60_000)).unref();
    return s;
  }

  /** The account's session in that VM; SESSION_NOT_FOUND for anyone else's, an ended or an unknown one. */
  get(account: Account, vmId: string, uploadId: string): UploadSession {
    const s = this.#sessions.get(uploadId);
    if (!s || s.ended || s.account.id !== account.id || s.vmId !== vmId) {
      throw new ApiError("SESSION_NOT_FOUND", `no upload ${uploadId} in VM ${vmId} (uploads end on commit, abort, after ${this.limits.uploadIdleMs / 1000} s unused, and when the server restarts)`, undefined, { reason: "UPLOAD_NOT_FOUND" });
    }
    s.lastUsed = Date.now();
    return s;
  }

  status(s: UploadSession): UploadStatus {
    return { uploadId: s.id, path: s.path, size: s.size, receivedBytes: s.received };
  }

  /**
   * Stores the chunk that starts at `offset` (which must be where the session stands). The body
   * is streamed to a chunk file in the VM; the session moves only once the agent has it whole.
   */
  async putChunk(s: UploadSession, guest: VmGuest, offset: number, declaredLength: number | undefined, body: Readable): Promise<UploadStatus> {
    return this.#exclusive(s, guest, async () => {
      if (offset !== s.received) {
        throw filesError(`this upload stands at byte ${s.received}; a chunk at ${offset} would ${offset < s.received ? "overlap stored bytes" : "leave a gap"} (GET the upload for where to resume)`, "OFFSET_MISMATCH", 409);
      }
      const room = Math.min(s.size - s.received, MAX_UPLOAD_CHUNK_BYTES);
      const pastMax = () =>
        room < MAX_UPLOAD_CHUNK_BYTES
          ? filesError(`this chunk runs past the upload's declared size of ${s.size} bytes (${s.size - s.received} left)`, "CHUNK_PAST_SIZE")
          : filesError(`a chunk may carry at most ${MAX_UPLOAD_CHUNK_BYTES} bytes`, "CHUNK_TOO_LARGE", 413);
      if (declaredLength !== undefined && declaredLength > room) throw pastMax();
      if (s.chunks.length >= MAX_UPLOAD_CHUNKS) throw filesError(`an upload may have at most ${MAX_UPLOAD_CHUNKS} chunks; send larger ones`, "TOO_MANY_CHUNKS");
      const meter = new ChunkMeter(room, s.hash.copy(), pastMax);
      try {
        await guest.writeFile(chunkPath(s, s.chunks.length), pipeline(body, meter, () => undefined), { mkdirs: true, mode: 0o600 });
      } catch (err) {
        body.destroy();
        throw meter.error ?? err;
      }
      s.chunks.push(meter.bytes);
      s.received += meter.bytes;
      s.hash = meter.hash;
      return this.status(s);
    });
  }

  /**
   * Verifies and writes the file: the declared digest against the bytes that arrived, then, while
   * the chunks stream from the VM into the target, those bytes against the same digest. Any
   * mismatch leaves the old file and ends the session (its bytes are wrong; nothing to resume).
   */
  async commit(s: UploadSession, guest: VmGuest): Promise<void> {
    await this.#exclusive(s, guest, async () => {
      if (s.received !== s.size) throw filesError(`this upload has ${s.received} of its ${s.size} bytes; send the rest before the commit`, "UPLOAD_INCOMPLETE", 409);
      const arrived = s.hash.copy().digest("hex");
      if (s.sha256 !== undefined && arrived !== s.sha256) {
        s.ended = true;
        throw filesError(`the uploaded bytes' sha256 is ${arrived}, not ${s.sha256}: the file was not replaced, and the upload is ended`, "SHA256_MISMATCH");
      }
      const mode = s.mode ?? ((await guest.exists(s.path, {})) ? undefined : NEW_FILE_MODE);
      const check = new Sha256Check(arrived);
      const source = Readable.from(readChunks(s, guest));
      try {
        await guest.writeFile(s.path, pipeline(source, check, () => undefined), { mkdirs: true, ...(mode !== undefined ? { mode } : {}) });
      } catch (err) {
        source.destroy();
        if (!check.mismatch) throw err; // a failure of the VM (agent gone, disk full): the client may commit again
        s.ended = true;
        throw filesError("the chunks stored in the VM changed before the commit (something in the VM rewrote them): the file was not replaced, and the upload is ended", "SHA256_MISMATCH");
      }
      s.ended = true;
    });
  }

  /** Ends the session (DELETE). A chunk in flight finishes first and then removes the chunks. */
  async abort(s: UploadSession): Promise<void> {
    s.ended = true;
    if (!s.busy) await this.#track(this.#discard(s));
  }

  /**
   * Ends every session, for the server's shutdown: from this call on each one answers 404, so the
   * chunk a client still sends fails, and each session's chunks are removed from its VM (a busy
   * one's when its operation ends, which the caller's cutting of the connections hastens). Waits
   * for that at most UPLOAD_CLOSE_BUDGET_MS; what is left is the next upload's sweep.
   */
  async close(): Promise<void> {
    clearInterval(this.#expiry);
    this.#expiry = undefined;
    for (const s of this.#sessions.values()) {
      if (s.ended) continue;
      s.ended = true;
      if (!s.busy) void this.#track(this.#discard(s));
    }
    let timer: NodeJS.Timeout | undefined;
    const budget = new Promise<void>((resolve) => (timer = setTimeout(resolve, UPLOAD_CLOSE_BUDGET_MS)));
    await Promise.race([Promise.allSettled([...this.#running]), budget]);
    clearTimeout(timer);
  }

  /** Counts `p` among the operations a shutdown waits for. */
  #track<T>(p: Promise<T>): Promise<T> {
    this.#running.add(p);
    const done = () => void this.#running.delete(p);
    p.then(done, done);
    return p;
  }

  /** Runs `fn` as the session's one operation; removes the chunks when it ends the session. */
  async #exclusive<T>(s: UploadSession, guest: VmGuest, fn: () => Promise<T>): Promise<T> {
    if (s.busy) throw filesError("another chunk or the commit of this upload is in progress; retry when it has ended", "UPLOAD_BUSY", 409);
    s.busy = true;
    return this.#track(
      (async () => {
        try {
          return await fn();
        } finally {
          s.busy = false;
          s.lastUsed = Date.now();
          if (s.ended) await this.#discard(s, guest);
        }
      })(),
    );
  }

  /** Forgets the session and removes its chunks, through `guest` or (not waking the VM) the gateway. */
  async #discard(s: UploadSession, guest?: VmGuest): Promise<void> {
    this.#sessions.delete(s.id);
    if (this.#sessions.size === 0 && this.#expiry) {
      clearInterval(this.#expiry);
      this.#expiry = undefined;
    }
    if (s.chunks.length === 0) return;
    const dir = `${UPLOAD_ROOT}/${s.id}`;
    try {
      if (guest) await guest.remove(dir, { recursive: true });
      else {
        await this.gateway.withVm(s.account, s.vmId, { wake: false, hold: false }, async (vm, g) => {
          if (!vm.running) throw new Error("the VM does not run");
          await g.remove(dir, { recursive: true });
        });
      }
    } catch (err) {
      // Left for the next upload into this VM to remove (#sweep).
      this.#swept.delete(s.vmId);
      this.log.info({ err, vmId: s.vmId, uploadId: s.id }, "upload: chunks not removed yet");
    }
  }

  /** Removes what no live session owns under UPLOAD_ROOT, once per VM (again after a failed cleanup). */
  async #sweep(vmId: string, guest: VmGuest): Promise<void> {
    if (this.#swept.has(vmId)) return;
    if (await guest.exists(UPLOAD_ROOT, {})) {
      for (const e of await guest.list(UPLOAD_ROOT, {})) {
        if (!this.#sessions.has(e.name)) await guest.remove(`${UPLOAD_ROOT}/${e.name}`, { recursive: true });
      }
    }
    this.#swept.add(vmId);
  }

  #expire(): void {
    const cutoff = Date.now() - this.limits.uploadIdleMs;
    for (const s of this.#sessions.values()) {
      if (s.busy || s.lastUsed > cutoff) continue;
      s.ended = true;
      void this.#track(this.#discard(s));
    }
  }
}

function chunkPath(s: UploadSession, index: number): string {
  return `${UPLOAD_ROOT}/${s.id}/${String(index).padStart(6, "0")}`;
}

/** The session's chunks as they are in the VM, in file order, one stream at a time. */
async function* readChunks(s: UploadSession, guest: VmGuest): AsyncGenerator<Buffer> {
  for (let i = 0; i < s.chunks.length; i++) {
    const { stream } = await guest.readFileStream(chunkPath(s, i), {});
    for await (const b of stream) yield b as Buffer;
  }
}

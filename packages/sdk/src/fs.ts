/**
 * `vm.fs`: files in the VM, as the handle's Linux user. File bytes travel raw and streamed
 * (Capsule's `/files-raw/` routes), so size is bounded only by the VM's disk; part of a file is
 * read with an HTTP `Range`. Directory listings use the Freestyle JSON route; mkdir/remove/
 * exists/stat run shell commands, as the freestyle client does (with proper quoting).
 * @module
 */
import { Readable } from "node:stream";
import type { ReadableStream as NodeWebReadableStream } from "node:stream/web";
import { shq } from "@capsule/contract/shell";
import { makeError } from "./errors.js";
import { seg, type RawBody, type Transport } from "./transport.js";
import type { DirEntry, ExecResult, FileStat } from "./types.js";

/**
 * Options of `fs.readFile()` and `fs.createReadStream()`: a byte range (an HTTP `Range` on the raw
 * file route). A range starting at or past the end of the file is an error (FILES_BAD_REQUEST,
 * status 416); one running past the end stops there.
 */
export interface ReadFileOptions {
  /** First byte to read. Default 0. */
  offset?: number;
  /** How many bytes at most (at least 1). Default: to the end of the file. */
  length?: number;
}

/** Options of `fs.writeFile()`. */
export interface WriteFileOptions {
  /** Mode of a newly created file, e.g. `0o755`. Default `0o644`. */
  mode?: number;
}

export class VmFs {
  /** @internal */
  constructor(
    private readonly t: Transport,
    private readonly vmId: string,
    private readonly user: string | undefined,
    private readonly exec: (command: string) => Promise<ExecResult>,
  ) {}

  #raw(path: string): string {
    return `/v1/vms/${seg(this.vmId)}/files-raw/${seg(path)}`;
  }

  /** Streams a file (or, with `offset` / `length`, part of it) out of the VM. */
  async createReadStream(path: string, opts: ReadFileOptions = {}): Promise<Readable> {
    const req = { user: this.user, headers: rangeHeader(opts) };
    if (this.t.nodeStreams) return this.t.stream("GET", this.#raw(path), req);
    const res = await this.t.send("GET", this.#raw(path), req);
    if (!res.body) return Readable.from([]);
    return Readable.fromWeb(res.body as unknown as NodeWebReadableStream<Uint8Array>);
  }

  /** Reads a whole file, or with `offset` / `length` the bytes of that range. */
  async readFile(path: string, opts: ReadFileOptions = {}): Promise<Buffer> {
    const req = { user: this.user, headers: rangeHeader(opts) };
    if (!this.t.nodeStreams) return Buffer.from(await (await this.t.send("GET", this.#raw(path), req)).arrayBuffer());
    const chunks: Buffer[] = [];
    for await (const chunk of await this.t.stream("GET", this.#raw(path), req)) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  /** Reads a whole file as text. `encoding` defaults to UTF-8. */
  async readTextFile(path: string, encoding: BufferEncoding = "utf-8"): Promise<string> {
    return (await this.readFile(path)).toString(encoding);
  }

  /**
   * Writes a file atomically, creating missing parent directories; owned by the handle's user.
   * `content` may be a Node stream of any size (it is streamed, not buffered).
   */
  async writeFile(path: string, content: Buffer | Uint8Array | string | Readable, opts: WriteFileOptions = {}): Promise<void> {
    const body = typeof content === "string" ? Buffer.from(content, "utf8") : content;
    const mode = opts.mode !== undefined ? opts.mode.toString(8).padStart(4, "0") : undefined;
    if (this.t.nodeStreams) {
      const res = await this.t.stream("PUT", this.#raw(path), { body, user: this.user, query: { mode } });
      res.resume(); // the answer is {bytes}; nothing in it is needed
      return;
    }
    const raw: RawBody = body instanceof Readable ? (Readable.toWeb(body) as unknown as ReadableStream<Uint8Array>) : body;
    await this.t.json("PUT", this.#raw(path), { raw, user: this.user, query: { mode } });
  }

  /** Writes text (encoded with `encoding`, default UTF-8). */
  async writeTextFile(path: string, text: string, encoding: BufferEncoding = "utf-8"): Promise<void> {
    await this.writeFile(path, Buffer.from(text, encoding));
  }

  /** Lists a directory: `[{name, kind: "file" | "directory"}]`. */
  async readDir(path: string): Promise<DirEntry[]> {
    const r = await this.t.json<{ files?: DirEntry[] }>("GET", `/v1/vms/${seg(this.vmId)}/files/${seg(path)}`, { user: this.user });
    if (!r.files) throw makeError("FILES_BAD_REQUEST", `${path} is not a directory`);
    return r.files;
  }

  /** Creates a directory; `recursive` (default false) creates parents and accepts an existing one. */
  async mkdir(path: string, recursive = false): Promise<void> {
    const r = await this.exec(`mkdir ${recursive ? "-p " : ""}-- ${shq(path)}`);
    if (r.statusCode !== 0) throw makeError("FILES_BAD_REQUEST", `cannot create directory ${path}: ${(r.stderr ?? "").trim()}`);
  }

  /** Removes a file, or a directory tree with `recursive` (default false). A missing path is not an error. */
  async remove(path: string, recursive = false): Promise<void> {
    const r = await this.exec(`rm -f${recursive ? "r" : ""} -- ${shq(path)}`);
    if (r.statusCode !== 0) throw makeError("FILES_BAD_REQUEST", `cannot remove ${path}: ${(r.stderr ?? "").trim()}`);
  }

  /** True when the path exists (for the handle's user). */
  async exists(path: string): Promise<boolean> {
    return (await this.exec(`test -e ${shq(path)}`)).statusCode === 0;
  }

  /** Size, type, permissions, owner and modification time of a path (links are not followed). */
  async stat(path: string): Promise<FileStat> {
    const r = await this.exec(`stat -c '%s|%F|%a|%U|%G|%y' -- ${shq(path)}`);
    const parts = (r.stdout ?? "").trim().split("|");
    if (r.statusCode !== 0 || parts.length < 6) throw makeError("FILE_NOT_FOUND", `cannot stat ${path}: ${(r.stderr ?? "").trim() || "no such file"}`);
    const [size, type, permissions, owner, group, modified] = parts as [string, string, string, string, string, string];
    return {
      size: parseInt(size, 10),
      isFile: type.includes("regular"),
      isDirectory: type === "directory",
      isSymlink: type === "symbolic link",
      permissions,
      owner,
      group,
      modified,
    };
  }
}

/** The `Range` header of a read; none without `offset` and `length`, so such reads stay plain GETs. */
function rangeHeader({ offset, length }: ReadFileOptions): Record<string, string> {
  if (offset === undefined && length === undefined) return {};
  const start = offset ?? 0;
  if (!Number.isSafeInteger(start) || start < 0) throw makeError("VALIDATION_ERROR", `offset must be a whole number of bytes, 0 or more, got ${offset}`);
  if (length === undefined) return { range: `bytes=${start}-` };
  if (!Number.isSafeInteger(length) || length < 1) throw makeError("VALIDATION_ERROR", `length must be a whole number of bytes, 1 or more, got ${length}`);
  return { range: `bytes=${start}-${start + length - 1}` };
}

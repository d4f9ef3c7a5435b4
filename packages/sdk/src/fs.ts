/**
 * `vm.fs`: files in the VM, as the handle's Linux user. File bytes travel raw and streamed
 * (Capsule's `/files-raw/` routes), so size is bounded only by the VM's disk; directory listings
 * use the Freestyle JSON route; mkdir/remove/exists/stat run shell commands, as the freestyle
 * client does (with proper quoting).
 * @module
 */
import { Readable } from "node:stream";
import type { ReadableStream as NodeWebReadableStream } from "node:stream/web";
import { shq } from "@capsule/contract/shell";
import { makeError } from "./errors.js";
import { seg, type RawBody, type Transport } from "./transport.js";
import type { DirEntry, ExecResult, FileStat } from "./types.js";

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

  /** Streams a file out of the VM. */
  async createReadStream(path: string): Promise<Readable> {
    if (this.t.nodeStreams) return this.t.stream("GET", this.#raw(path), { user: this.user });
    const res = await this.t.send("GET", this.#raw(path), { user: this.user });
    if (!res.body) return Readable.from([]);
    return Readable.fromWeb(res.body as unknown as NodeWebReadableStream<Uint8Array>);
  }

  /** Reads a whole file. */
  async readFile(path: string): Promise<Buffer> {
    if (!this.t.nodeStreams) return Buffer.from(await (await this.t.send("GET", this.#raw(path), { user: this.user })).arrayBuffer());
    const chunks: Buffer[] = [];
    for await (const chunk of await this.t.stream("GET", this.#raw(path), { user: this.user })) chunks.push(chunk as Buffer);
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

import fs from "node:fs/promises";
import { newId } from "../ids.js";
import type { Paths } from "../paths.js";
import type { PhaseTimer } from "../phase-timer.js";
import type { Records } from "../state/records.js";
import { listDir } from "../state/store.js";
import { PARTIAL_SUFFIX, copyLayer, removeTree, sealLayer } from "./layers.js";

/**
 * Read-only directories under one parent, named by id and shared by reference: a directory lives
 * while a record names it (`referenced`), or while it is reserved (being written, or about to be
 * named by a record); everything else — a write a crash interrupted (`<id>.partial`), one whose
 * record was never written, one nobody uses any more — is collected by {@link gc}. Snapshot
 * layers and memory images are both kept this way.
 */
export class RefcountedDirs {
  /** Ids being written, waiting for their record or in use by a restore, with their holders' count: never collected. */
  readonly #reserved = new Map<string, number>();

  constructor(
    readonly dir: string,
    private readonly referenced: () => Promise<Set<string>>,
  ) {}

  /** Where the complete directory `id` lives. */
  path(id: string): string {
    return `${this.dir}/${id}`;
  }

  /** Where `id` is written before {@link seal} gives it its name. */
  partialPath(id: string): string {
    return this.path(id) + PARTIAL_SUFFIX;
  }

  /** A fresh id that {@link gc} leaves alone until {@link release}. */
  reserve(): string {
    const id = newId(16);
    this.#reserved.set(id, 1);
    return id;
  }

  /** Keeps the existing `id` from {@link gc} (a restore reading it) until the matching {@link release}. */
  hold(id: string): void {
    this.#reserved.set(id, (this.#reserved.get(id) ?? 0) + 1);
  }

  release(id: string): void {
    const n = (this.#reserved.get(id) ?? 0) - 1;
    if (n > 0) this.#reserved.set(id, n);
    else this.#reserved.delete(id);
  }

  /** Makes the written directory `id` durable and gives it its name. Resolves with its size in bytes. */
  async seal(id: string, timer?: PhaseTimer): Promise<number> {
    try {
      return await sealLayer(this.path(id), timer);
    } catch (err) {
      await this.discard(id);
      throw err;
    }
  }

  /** Removes a reserved directory's files (a failed capture, or one used and no longer needed) and releases it. */
  async discard(id: string): Promise<void> {
    await removeTree(this.partialPath(id));
    await removeTree(this.path(id));
    this.#reserved.delete(id);
  }

  /** Ids on disk (complete ones). */
  async ids(): Promise<string[]> {
    return (await listDir(this.dir)).filter((e) => !e.endsWith(PARTIAL_SUFFIX));
  }

  /** Removes every directory no record names and nobody reserved, and every partial one. */
  async gc(): Promise<void> {
    const used = await this.referenced();
    for (const entry of await listDir(this.dir)) {
      const partial = entry.endsWith(PARTIAL_SUFFIX);
      const base = partial ? entry.slice(0, -PARTIAL_SUFFIX.length) : entry;
      if (this.#reserved.has(base)) continue;
      if (partial || !used.has(base)) await removeTree(this.path(entry));
    }
  }
}

/** The snapshot layers under `<dataDir>/layers`, named by VM and snapshot records. */
export class LayerStore extends RefcountedDirs {
  constructor(paths: Paths, records: Records) {
    super(paths.layersDir, () => records.referencedLayers());
  }

  /** Copies `upperDir` into the reserved layer `id` (under its temp name): the part a VM is paused for. */
  async copy(id: string, upperDir: string): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true });
    try {
      await copyLayer(upperDir, this.path(id));
    } catch (err) {
      await this.discard(id);
      throw err;
    }
  }

  /** {@link copy} then {@link seal}. */
  async write(id: string, upperDir: string): Promise<number> {
    await this.copy(id, upperDir);
    return this.seal(id);
  }
}

/**
 * Memory images (`runsc checkpoint` output) under `<dataDir>/memory`, named by memory snapshot
 * records. An image is written under its temp name by runsc, then sealed like a layer.
 */
export class ImageStore extends RefcountedDirs {
  constructor(paths: Paths, records: Records) {
    super(paths.memoryDir, () => records.referencedImages());
  }
}

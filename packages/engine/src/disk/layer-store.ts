import fs from "node:fs/promises";
import { newId } from "../ids.js";
import type { Paths } from "../paths.js";
import type { Records } from "../state/records.js";
import { listDir } from "../state/store.js";
import { PARTIAL_SUFFIX, copyLayer, removeTree } from "./layers.js";

/**
 * The read-only snapshot layers under `<dataDir>/layers`. A layer lives while a VM record or a
 * snapshot record lists it, or while it is reserved (being written, or about to be named by a
 * record); everything else — a copy a crash interrupted, a layer whose record was never written,
 * a layer nobody uses any more — is collected by {@link gc}.
 */
export class LayerStore {
  /** Layers being written or waiting for their record: never collected. */
  readonly #reserved = new Set<string>();

  constructor(
    private readonly paths: Paths,
    private readonly records: Records,
  ) {}

  /** A fresh layer id that {@link gc} leaves alone until {@link release}. */
  reserve(): string {
    const id = newId(16);
    this.#reserved.add(id);
    return id;
  }

  release(id: string): void {
    this.#reserved.delete(id);
  }

  /** Copies `upperDir` into the reserved layer `id`, durably. Resolves with its size in bytes. */
  async write(id: string, upperDir: string): Promise<number> {
    await fs.mkdir(this.paths.layersDir, { recursive: true });
    try {
      return await copyLayer(upperDir, this.paths.layer(id));
    } catch (err) {
      await this.discard(id);
      throw err;
    }
  }

  /** Removes a reserved layer's files (a failed capture) and releases it. */
  async discard(id: string): Promise<void> {
    await removeTree(this.paths.layer(id) + PARTIAL_SUFFIX);
    await removeTree(this.paths.layer(id));
    this.release(id);
  }

  /** Layer ids on disk (complete ones). */
  async ids(): Promise<string[]> {
    return (await listDir(this.paths.layersDir)).filter((e) => !e.endsWith(PARTIAL_SUFFIX));
  }

  /** Removes every layer no record lists and nobody reserved, and every partial copy. */
  async gc(): Promise<void> {
    const used = await this.records.referencedLayers();
    for (const entry of await listDir(this.paths.layersDir)) {
      const partial = entry.endsWith(PARTIAL_SUFFIX);
      const base = partial ? entry.slice(0, -PARTIAL_SUFFIX.length) : entry;
      if (this.#reserved.has(base)) continue;
      if (partial || !used.has(base)) await removeTree(this.paths.layer(entry));
    }
  }
}

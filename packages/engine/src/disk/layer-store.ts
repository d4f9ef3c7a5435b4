import fs from "node:fs/promises";
import { newId } from "../ids.js";
import type { Paths } from "../paths.js";
import type { PhaseTimer } from "../phase-timer.js";
import type { Records } from "../state/records.js";
import { listDir } from "../state/store.js";
import { PARTIAL_SUFFIX, copyLayer, removeTree, sealLayer } from "./layers.js";

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

  /** Copies `upperDir` into the reserved layer `id` (under its temp name): the part a VM is paused for. */
  async copy(id: string, upperDir: string): Promise<void> {
    await fs.mkdir(this.paths.layersDir, { recursive: true });
    try {
      await copyLayer(upperDir, this.paths.layer(id));
    } catch (err) {
      await this.discard(id);
      throw err;
    }
  }

  /** Makes the copied layer `id` durable and gives it its name. Resolves with its size in bytes. */
  async seal(id: string, timer?: PhaseTimer): Promise<number> {
    try {
      return await sealLayer(this.paths.layer(id), timer);
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

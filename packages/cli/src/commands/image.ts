import path from "node:path";
import type { Command } from "commander";
import { registerImageBuild } from "./image-build.js";
import { registerImageList } from "./image-list.js";

/** The images directory: --images-dir, else CAPSULE_IMAGES_DIR, else <data dir>/images. */
export function imagesDirOf(o: { imagesDir?: string }): string {
  return o.imagesDir ?? process.env.CAPSULE_IMAGES_DIR ?? path.join(process.env.CAPSULE_DATA_DIR ?? "/var/lib/capsule", "images");
}

/** `capsule image ...`: base images on this host (like `keys`, it reads the data dir directly). */
export function registerImage(program: Command): void {
  const image = program.command("image").description("base images on this host").option("--images-dir <dir>", "images directory (env CAPSULE_IMAGES_DIR; default <data-dir>/images)");
  registerImageList(image);
  registerImageBuild(image);
}

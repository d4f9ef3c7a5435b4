import type { Command } from "commander";
import { registerImageList } from "./image-list.js";

/** `capsule image ...`: base images on this host (like `keys`, it reads the data dir directly). */
export function registerImage(program: Command): void {
  const image = program.command("image").description("base images on this host").option("--images-dir <dir>", "images directory (env CAPSULE_IMAGES_DIR; default <data-dir>/images)");
  registerImageList(image);
}

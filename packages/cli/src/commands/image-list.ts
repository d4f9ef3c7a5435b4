import fs from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { action, age, printJson, printTable } from "../api.js";
import { imagesDirOf } from "./image.js";

interface ImageInfo {
  name: string;
  path: string;
  os: string | null;
  builtAt: string;
}

function osName(rootfs: string): string | null {
  try {
    const text = fs.readFileSync(path.join(rootfs, "etc/os-release"), "utf8");
    return /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(text)?.[1] ?? null;
  } catch {
    return null;
  }
}

export function registerImageList(image: Command): void {
  image
    .command("list")
    .alias("ls")
    .description("list the base images VMs can boot (built by scripts/setup.sh)")
    .option("--json", "print JSON [{name, path, os, builtAt}]")
    .action(
      action(async function (this: Command) {
        const o = this.optsWithGlobals<{ imagesDir?: string; json?: boolean }>();
        const dir = imagesDirOf(o);
        const entries = fs.existsSync(dir) ? fs.readdirSync(dir, { withFileTypes: true }) : [];
        const images: ImageInfo[] = [];
        for (const e of entries) {
          const rootfs = path.join(dir, e.name, "rootfs");
          if (!e.isDirectory() || !fs.existsSync(rootfs)) continue;
          images.push({ name: e.name, path: rootfs, os: osName(rootfs), builtAt: fs.statSync(rootfs).mtime.toISOString() });
        }
        if (o.json) return printJson(images);
        if (!images.length) process.stderr.write(`no images in ${dir}; build one with: sudo capsule image build\n`);
        printTable(["NAME", "OS", "BUILT", "PATH"], images.map((i) => [i.name, i.os, age(i.builtAt), i.path]));
      }),
    );
}

import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { action, CliError, EXIT } from "../api.js";
import { imagesDirOf } from "./image.js";

/** What every base image holds; the seed's walk-through needs curl, sudo, useradd and /srv/app. */
const PACKAGES = ["bash", "coreutils", "curl", "ca-certificates", "sudo", "passwd", "procps", "git", "less", "xz-utils"];
const SUITES = ["trixie", "bookworm"];

/** mmdebstrap's progress lines, in order, with how far along each one is. */
const STAGES: Array<[RegExp, number, string]> = [
  [/running apt-get update/, 0.05, "reading package lists"],
  [/downloading packages/, 0.15, "downloading packages"],
  [/extracting archives/, 0.35, "extracting"],
  [/installing essential packages/, 0.45, "installing essential packages"],
  [/installing remaining packages/, 0.65, "installing the rest"],
  [/cleaning package lists/, 0.85, "cleaning up"],
  [/creating tarball/, 0.9, "packing"],
];

/** One status line: a bar on a terminal, plain lines otherwise (logs, CI). */
function progress(name: string) {
  const tty = process.stderr.isTTY;
  const t0 = Date.now();
  let last = "";
  return (fraction: number, what: string) => {
    const secs = Math.round((Date.now() - t0) / 1000);
    if (!tty) {
      if (what !== last) process.stderr.write(`${name}: ${what} (${secs}s)\n`);
    } else {
      const width = 30;
      const filled = Math.round(fraction * width);
      process.stderr.write(`\r\x1b[K${name} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${String(Math.round(fraction * 100)).padStart(3)}% ${what} (${secs}s)`);
      if (fraction >= 1) process.stderr.write("\n");
    }
    last = what;
  };
}

function run(cmd: string, args: string[], onLine: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
    let tail = "";
    let buf = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (text: string) => {
      buf += text;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        tail = `${tail}${line}\n`.slice(-4000);
        onLine(line);
      }
    });
    child.on("error", (err) => reject(new CliError("IMAGE_BUILD_FAILED", `cannot run ${cmd}: ${err.message} (sudo apt-get install ${cmd})`, EXIT.FAILURE)));
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new CliError("IMAGE_BUILD_FAILED", `${cmd} failed (exit ${code}):\n${tail}`, EXIT.FAILURE))));
  });
}

/**
 * Builds `<images-dir>/<name>/rootfs` with mmdebstrap from this host's apt sources, in a temp
 * directory renamed into place at the end, so a failed or interrupted build never leaves a
 * half image that VMs could boot.
 */
export async function buildImage(imagesDir: string, name: string, suite: string, force: boolean): Promise<{ built: boolean; path: string }> {
  const dest = path.join(imagesDir, name);
  if (fs.existsSync(path.join(dest, "rootfs")) && !force) return { built: false, path: path.join(dest, "rootfs") };
  const work = path.join(imagesDir, `.build-${name}-${process.pid}`);
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(path.join(work, "rootfs"), { recursive: true });
  const show = progress(name);
  try {
    show(0, `mmdebstrap ${suite}`);
    await run("mmdebstrap", ["--variant=minbase", `--include=${PACKAGES.join(",")}`, suite, path.join(work, "rootfs.tar")], (line) => {
      const stage = STAGES.find(([re]) => re.test(line));
      if (stage) show(stage[1], stage[2]);
    });
    show(0.95, "unpacking");
    await run("tar", ["-C", path.join(work, "rootfs"), "--numeric-owner", "-xpf", path.join(work, "rootfs.tar")], () => undefined);
    fs.rmSync(path.join(work, "rootfs.tar"));
    const root = path.join(work, "rootfs");
    fs.mkdirSync(path.join(root, "srv/app"), { recursive: true });
    // The engine bind-mounts the VM's own hosts, resolv.conf and hostname over these.
    for (const f of ["etc/hosts", "etc/resolv.conf", "etc/hostname"]) fs.writeFileSync(path.join(root, f), "");
    fs.writeFileSync(path.join(root, "etc/capsule-image"), `${name} ${suite} ${new Date().toISOString()}\n`);
    const old = `${dest}.old-${process.pid}`;
    if (fs.existsSync(dest)) fs.renameSync(dest, old);
    fs.renameSync(work, dest);
    fs.rmSync(old, { recursive: true, force: true });
    show(1, "done");
    return { built: true, path: path.join(dest, "rootfs") };
  } catch (err) {
    fs.rmSync(work, { recursive: true, force: true });
    throw err;
  }
}

export function registerImageBuild(image: Command): void {
  image
    .command("build")
    .argument("[name]", "image name (default: the suite)")
    .description("build a Debian base image with mmdebstrap from this host's apt sources (root)")
    .option("--suite <suite>", `Debian suite: ${SUITES.join(" or ")}`, "trixie")
    .option("--force", "rebuild even if the image exists (VMs already using it keep their copy)")
    .option("--json", "print JSON {name, path, built}")
    .addHelpText("after", "\nExamples:\n  sudo capsule image build                  # trixie\n  sudo capsule image build --suite bookworm\n")
    .action(
      action(async function (this: Command, name: string | undefined) {
        const o = this.optsWithGlobals<{ imagesDir?: string; suite: string; force?: boolean; json?: boolean }>();
        if (!SUITES.includes(o.suite)) throw new CliError("INVALID_ARGUMENT", `--suite must be ${SUITES.join(" or ")}`, EXIT.USAGE);
        const imageName = name ?? o.suite;
        if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(imageName)) throw new CliError("INVALID_ARGUMENT", `bad image name ${imageName}: letters, digits, . _ - only`, EXIT.USAGE);
        if (process.getuid?.() !== 0) throw new CliError("PERMISSION_DENIED", "building an image needs root (sudo capsule image build)", EXIT.FAILURE);
        const dir = imagesDirOf(o);
        fs.mkdirSync(dir, { recursive: true });
        const r = await buildImage(dir, imageName, o.suite, o.force ?? false);
        if (o.json) process.stdout.write(`${JSON.stringify({ name: imageName, path: r.path, built: r.built })}\n`);
        else process.stdout.write(r.built ? `built ${imageName} at ${r.path}\n` : `${imageName} is present (${r.path}); --force rebuilds it\n`);
      }),
    );
}

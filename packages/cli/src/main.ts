#!/usr/bin/env node
/**
 * The `capsule` command's entry point. It only sets up start-up speed, then loads the command
 * tree (program.ts), which loads just the verb being run: API verbs load the SDK and never the
 * server, the engine or SQLite.
 * @module
 */
import nodeModule from "node:module";

// Node 22.1+ keeps compiled code of the CLI and the SDK on disk between runs; Node 20 lacks it.
(nodeModule as { enableCompileCache?: () => unknown }).enableCompileCache?.();

// `capsule … | head`: a reader that went away is the end of the output, not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw err;
  });
}

await import("./program.js");

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

await import("./program.js");

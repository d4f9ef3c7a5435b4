#!/usr/bin/env node
/** The `capsule` command. One verb per file under commands/. */
import { Command } from "commander";
import { registerKeys } from "./commands/keys.js";
import { registerServe } from "./commands/serve.js";

const program = new Command("capsule").description("Capsule: self-hosted sandboxes for AI agents").showHelpAfterError();
registerServe(program);
registerKeys(program);
await program.parseAsync();

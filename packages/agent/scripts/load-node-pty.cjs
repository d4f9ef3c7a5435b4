// What the agent bundle gets for `import("node-pty")`. node-pty is a native addon, which a V8
// startup snapshot cannot hold, and the snapshot's own `require` knows only Node's built-in
// modules; so it is loaded at the first terminal from the node_modules beside whatever the agent
// started from: the snapshot blob (`--snapshot-blob`) or main.js.
/* global require, module, __dirname */
/* eslint-disable @typescript-eslint/no-require-imports -- CommonJS, as the bundle is */
"use strict";
const { createRequire } = require("node:module");
const path = require("node:path");

const blobFlag = process.execArgv.findIndex((arg) => arg === "--snapshot-blob" || arg.startsWith("--snapshot-blob="));
const blob = blobFlag < 0 ? undefined : process.execArgv[blobFlag].split("=")[1] ?? process.execArgv[blobFlag + 1];
const agentDir = blob ? path.dirname(path.resolve(blob)) : __dirname;
module.exports = createRequire(path.join(agentDir, "main.js"))("node-pty");

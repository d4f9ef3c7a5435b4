/**
 * The npm cache's process (scripts/package-caches.sh runs it as an unprivileged user):
 *
 *   node npm-cache-main.js --dir DIR --max-mb N --port PORT --public-url URL
 *
 * Listens on 127.0.0.1 only (VMs arrive through the firewall's DNAT). Prints one JSON line
 * when it listens; SIGTERM/SIGINT stop it.
 */
import { parseArgs } from "node:util";
import { startNpmCache } from "./npm-cache.js";

const { values } = parseArgs({
  options: { dir: { type: "string" }, "max-mb": { type: "string" }, port: { type: "string" }, "public-url": { type: "string" } },
  strict: true,
});
const maxMb = Number(values["max-mb"]);
const port = Number(values.port);
if (!values.dir || !values["public-url"] || !Number.isInteger(maxMb) || maxMb < 1 || !Number.isInteger(port) || port < 1 || port > 65535) {
  process.stderr.write("usage: npm-cache-main.js --dir DIR --max-mb N --port PORT --public-url URL\n");
  process.exit(2);
}
const cache = await startNpmCache({ dir: values.dir, maxBytes: maxMb * 1024 * 1024, publicUrl: values["public-url"] }, { host: "127.0.0.1", port });
process.stdout.write(`${JSON.stringify({ listening: `http://127.0.0.1:${cache.port}`, dir: values.dir, maxMb })}\n`);
const stop = () => void cache.close().then(() => process.exit(0));
process.once("SIGTERM", stop);
process.once("SIGINT", stop);

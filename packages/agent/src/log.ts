/** The agent's stderr ends up in the VM's runtime log on the host. */
export function log(message: string): void {
  process.stderr.write(`${new Date().toISOString()} capsule-agent: ${message}\n`);
}

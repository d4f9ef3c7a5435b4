import { OciCliRuntime } from "./oci-cli.js";

/**
 * runc: plain namespaces and cgroups on the host kernel. Faster to start, weaker isolation (the
 * guest talks to the host kernel directly). The network namespace is joined through the spec.
 */
export class RuncRuntime extends OciCliRuntime {
  readonly name = "runc" as const;
  readonly netnsInSpec = true;

  protected globalArgs(): string[] {
    return [`--root=${this.root}`];
  }

  protected runArgv(id: string, bundleDir: string): { cmd: string; args: string[] } {
    return { cmd: this.bin, args: [`--root=${this.root}`, "run", "--detach", `--bundle=${bundleDir}`, id] };
  }
}

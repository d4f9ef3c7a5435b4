import { EngineError, ErrorCode } from "../errors.js";
import { OciCliRuntime } from "./oci-cli.js";

/**
 * runc: plain namespaces and cgroups on the host kernel. Faster to start, weaker isolation (the
 * guest talks to the host kernel directly). The network namespace is joined through the spec.
 * No memory checkpoints: runc's need CRIU, which does not run on these kernels.
 */
export class RuncRuntime extends OciCliRuntime {
  readonly name = "runc" as const;
  readonly netnsInSpec = true;
  readonly network = undefined;
  readonly canCheckpoint = false;

  protected globalArgs(): string[] {
    return [`--root=${this.root}`];
  }

  protected runArgv(id: string, bundleDir: string): { cmd: string; args: string[] } {
    return { cmd: this.bin, args: [`--root=${this.root}`, "run", "--detach", `--bundle=${bundleDir}`, id] };
  }

  checkpoint(): Promise<void> {
    return Promise.reject(unsupported());
  }

  restore(): Promise<void> {
    return Promise.reject(unsupported());
  }

  setHostname(): Promise<void> {
    return Promise.reject(unsupported());
  }
}

function unsupported(): EngineError {
  return new EngineError(ErrorCode.Unsupported, "runc VMs have no memory checkpoints (CRIU does not run on this kernel); use a runsc VM");
}
